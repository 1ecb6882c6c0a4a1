"""Child processes started by `mraru demo` and the tests: own session, logged, stopped by PID."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen


def free_port(preferred: int | None = None) -> int:
    """Return `preferred` when it is free on 127.0.0.1, else any free port."""
    if preferred:
        with socket.socket() as sock:
            # A port left in TIME_WAIT by a previous run is free for a new listener.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, process: "ManagedProcess | None" = None) -> None:
    """Poll `url` until it answers any HTTP status; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.name} exited with code {process.poll()} before {url} answered; "
                               f"see {process.log_path}")
        try:
            with urlopen(url, timeout=2):
                return
        except URLError as exc:
            if getattr(exc, "code", None) is not None:
                return
            time.sleep(0.2)
        except (ConnectionError, TimeoutError, OSError):
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


class ManagedProcess:
    """A child process in its own session with output in `log_path`, stopped by its PID."""

    def __init__(self, name: str, args: list[str], env: dict, log_path: Path, cwd: Path | None = None):
        self.name = name
        self.args = args
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self):
        return self.process.poll()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Send `sig` to the process group, then SIGKILL after `timeout` seconds."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        if not self._log.closed:
            self._log.close()
