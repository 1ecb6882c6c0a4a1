"""Start the backend's own processes (`mraru serve`, `mraru worker`) for tests."""

import os
import sys
from pathlib import Path

from backend.processes import ManagedProcess, free_port, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ManagedProcess", "backend_env", "free_port", "start_server", "start_worker", "wait_for_http"]


def backend_env(model_dir: Path, **overrides) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MRARU_", "LABEL_STUDIO_", "OPENAI_", "BASIC_AUTH_", "REDIS_URL"))}
    env.update({"MODEL_DIR": str(model_dir), "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def start_server(model_dir: Path, log_dir: Path, port: int | None = None, **env_overrides):
    """Start `mraru serve` and return `(process, base_url)` once /health answers."""
    port = port or free_port()
    process = ManagedProcess(f"serve-{port}", [sys.executable, "-m", "backend.cli", "serve", "--port", str(port)],
                             backend_env(model_dir, **env_overrides), log_dir / f"serve-{port}.log", cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", process=process)
    except Exception:
        process.stop()
        raise
    return process, url


def start_worker(model_dir: Path, log_dir: Path, name: str = "worker", **env_overrides) -> ManagedProcess:
    return ManagedProcess(name, [sys.executable, "-m", "backend.cli", "worker"],
                          backend_env(model_dir, **env_overrides), log_dir / f"{name}.log", cwd=REPO_ROOT)
