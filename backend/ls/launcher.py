"""Install and run a local Label Studio 1.23.2 for tests and demos, bound to 127.0.0.1.

Label Studio lives in its own virtual environment because it pins many packages (Django 5.2,
openai 1.x, redis 5, rq 2.6) that clash with the backend's.
"""

import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from backend.ls.client import LabelStudioClient

logger = logging.getLogger(__name__)

LS_VERSION = "1.23.2"
HOST = "127.0.0.1"
DEFAULT_USERNAME = "admin@example.com"
DEFAULT_PASSWORD = "mraru-admin-pass"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0
IMPORT_BATCH = 1000
BOUND_PATTERN = re.compile(rb"Starting development server at http://[^:/]+:(\d+)/")


def ensure_label_studio(venv_dir: Path, progress=print) -> Path:
    """Return the `label-studio` executable in `venv_dir`, installing Label Studio there if missing.

    The install (``pip install label-studio==1.23.2``, about 1 GB) needs PyPI and takes about a
    minute. Each line pip prints is passed to `progress`.
    """
    venv_dir = Path(venv_dir)
    executable = venv_dir / "bin" / "label-studio"
    if executable.exists():
        return executable
    if not (venv_dir / "bin" / "python").exists():
        progress(f"creating virtual environment {venv_dir}")
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)
    progress(f"installing label-studio=={LS_VERSION} into {venv_dir} (about 1 GB, about a minute)")
    command = [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off",
               f"label-studio=={LS_VERSION}"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as pip:
        for line in pip.stdout:
            progress(line.rstrip())
    if pip.returncode != 0 or not executable.exists():
        raise RuntimeError(f"pip install label-studio=={LS_VERSION} into {venv_dir} failed "
                           f"(exit {pip.returncode}); see the output above, fix it and rerun")
    return executable


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Return True when something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


class LabelStudioServer:
    """Run `label-studio start` on 127.0.0.1 in its own process group, as a context manager.

    The first start on a fresh `data_dir` runs migrations (35-47 s measured on 2 cores), and a
    restart on the same directory takes 4-7 s. The admin user and its legacy token are created from
    `username`, `password` and `token` only when the directory is fresh.
    """

    def __init__(self, venv_dir, data_dir, port=None, username=DEFAULT_USERNAME,
                 password=DEFAULT_PASSWORD, token=None, start_timeout=START_TIMEOUT):
        self.venv_dir = Path(venv_dir)
        self.data_dir = Path(data_dir)
        self.port = port
        self.username = username
        self.password = password
        self.token = token or secrets.token_hex(20)
        if len(self.token) != 40:
            raise ValueError(f"Label Studio token must have 40 characters; got {len(self.token)}")
        self.start_timeout = start_timeout
        self.log_path = self.data_dir / "label-studio.log"
        self.process = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self, timeout: float = 30.0) -> LabelStudioClient:
        """Return a `LabelStudioClient` that authenticates with the legacy token."""
        return LabelStudioClient(self.url, self.token, timeout=timeout)

    def environment(self) -> dict:
        """Build the environment for a headless, offline, scriptable Label Studio."""
        env = dict(os.environ)
        for name in ("VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE"):
            env.pop(name, None)
        env.update({
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "false",
            "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "false",
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_SENTRY_DSN": "",
            "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
            # This only skips the start-up version check against PyPI. The server stays Django's.
            "LABEL_STUDIO_APP_WEBSERVER": "uwsgi",
            "LABEL_STUDIO_HOST": self.url,
        })
        return env

    def start(self) -> "LabelStudioServer":
        executable = self.venv_dir / "bin" / "label-studio"
        if not executable.exists():
            raise FileNotFoundError(f"{executable} not found; run `make test` (or ensure_label_studio) "
                                    f"to install label-studio=={LS_VERSION} into {self.venv_dir}")
        if self.port is None:
            self.port = free_port()
        if port_in_use(self.port):
            raise RuntimeError(f"port {self.port} on {HOST} is busy (Label Studio would silently move to "
                               f"{self.port + 1}); pass another port or port=None")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [str(executable), "start", "--no-browser", "--internal-host", HOST,
                   "--port", str(self.port), "--data-dir", str(self.data_dir)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.environment(), start_new_session=True)
        logger.info("label-studio pid=%s starting on %s, log %s", self.process.pid, self.url, self.log_path)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        headers = {"Authorization": f"Token {self.token}"}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"label-studio exited with code {self.process.returncode} before it was "
                                   f"ready; see {self.log_path}")
            self._check_bound_port()
            try:
                response = requests.get(f"{self.url}/api/current-user/whoami", headers=headers, timeout=2)
            except requests.RequestException:
                time.sleep(0.5)
                continue
            if response.status_code == 200 and response.json().get("email") == self.username:
                logger.info("label-studio pid=%s ready on %s", self.process.pid, self.url)
                return
            if response.status_code == 401:
                raise RuntimeError(f"label-studio on {self.url} rejected the token (HTTP 401) because "
                                   f"{self.data_dir} was created with other credentials; use a fresh data "
                                   "dir or the original token")
            time.sleep(0.5)
        raise TimeoutError(f"label-studio not ready on {self.url} after {self.start_timeout:.0f} s; "
                           f"see {self.log_path}")

    def _check_bound_port(self) -> None:
        """Raise if the log of this start shows Label Studio listening on a port other than `port`."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            match = BOUND_PATTERN.search(log.read())
        if match and int(match.group(1)) != self.port:
            raise RuntimeError(f"label-studio bound port {int(match.group(1))} instead of {self.port}; "
                               "another process took the port, so retry with port=None")

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after `STOP_TIMEOUT` s."""
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session makes the child its own group leader
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.warning("label-studio pid=%s still running after SIGTERM, sending SIGKILL", self.process.pid)
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        logger.info("label-studio pid=%s stopped", self.process.pid)

    def __enter__(self) -> "LabelStudioServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def create_project(url: str, token: str, title: str, label_config: str, tasks: list[dict],
                   batch_size: int = IMPORT_BATCH) -> int:
    """Create a project and import `tasks` (each ``{"data": {...}}`` or a plain data dict) in batches."""
    if len(title) < 3:
        raise ValueError(f"Label Studio project titles need at least 3 characters; got {title!r}")
    client = LabelStudioClient(url, token, timeout=60.0)
    project = client.request("POST", "api/projects/", json={"title": title, "label_config": label_config},
                             retry=False, operation=f"create project {title!r}")
    project_id = project["id"]
    for start in range(0, len(tasks), batch_size):
        chunk = [task if "data" in task else {"data": task} for task in tasks[start:start + batch_size]]
        client.request("POST", f"api/projects/{project_id}/import", json=chunk, retry=False, timeout=300.0,
                       params={"commit_to_project": "true"},
                       operation=f"project {project_id}: import tasks {start}..{start + len(chunk) - 1}")
    logger.info("project=%s created with %s tasks", project_id, len(tasks))
    return project_id


def connect_backend(url: str, token: str, project_id: int, backend_url: str, title: str,
                    basic_auth=None) -> int:
    """Connect an ML backend to a project, as "Connect Model" does, and return its id.

    Label Studio calls the backend's ``/health`` and ``/setup`` while connecting and creates a
    project webhook to ``backend_url/webhook``. `basic_auth` is ``(user, password)`` or None.
    """
    client = LabelStudioClient(url, token, timeout=30.0)
    body = {"url": backend_url, "project": project_id, "title": title, "is_interactive": False,
            "auth_method": "NONE"}
    if basic_auth:
        body.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1])
    backend = client.request("POST", "api/ml/", json=body, retry=False,
                             operation=f"project {project_id}: connect ML backend {backend_url}")
    logger.info("project=%s connected ML backend %s at %s", project_id, backend["id"], backend_url)
    return backend["id"]
