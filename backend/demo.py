"""`mraru demo`: the whole loop on 127.0.0.1 with a real corpus, stopped with Ctrl-C.

It installs what is missing: Label Studio 1.23.2 and the llama.cpp teacher, each in its own
virtual environment. Then it starts Label Studio, the local teacher, the backend and a worker,
creates a project from a corpus, connects the backend, waits for the first round and prints
what to click.
"""

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

from .processes import ManagedProcess, free_port, wait_for_http

logger = logging.getLogger(__name__)

DEMO_TOKEN = "d" * 8 + "0123456789abcdef0123456789abcdef"
DEMO_USER = "admin@example.com"
DEMO_PASSWORD = "mraru-demo-pass"
LOCAL_TEACHER_ALIAS = "gemma-3-270m"


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", default="rotten_tomatoes",
                        help="rotten_tomatoes (default), bbc_news, tweets, or a CSV/JSON/JSONL file with "
                             "'text' and 'label' columns")
    parser.add_argument("--limit", type=int, default=2000,
                        help="number of tasks to import, a class-stratified sample (default 2000; 0 for all)")
    parser.add_argument("--seed-examples", type=int, default=8,
                        help="tasks imported with their corpus label as annotations, which the teacher uses "
                             "as few-shot examples (default 8)")
    parser.add_argument("--work-dir", default=".mraru-demo",
                        help="folder for Label Studio's data, the model directory and logs (default .mraru-demo)")
    parser.add_argument("--label-studio-port", type=int, default=8080, help="Label Studio port (default 8080)")
    parser.add_argument("--backend-port", type=int, default=9090, help="backend port (default 9090)")
    parser.add_argument("--teacher-port", type=int, default=8081, help="local teacher port (default 8081)")
    parser.add_argument("--ls-venv", default=".venv-ls", help="Label Studio's virtual environment (default .venv-ls)")
    parser.add_argument("--teacher-venv", default=".venv-teacher",
                        help="the local teacher's virtual environment (default .venv-teacher)")
    parser.add_argument("--exit-after-round", action="store_true",
                        help="stop everything once the first round is in Label Studio (for scripted checks)")


def _progress(message: str) -> None:
    print(f"[mraru demo] {message}", flush=True)


def prepare(ls_venv: str, teacher_venv: str) -> None:
    """Install Label Studio and the local teacher into their virtual environments if missing."""
    from .ls.launcher import ensure_label_studio
    from .teacher.local import ensure_local_teacher

    ensure_label_studio(Path(ls_venv), progress=_progress)
    ensure_local_teacher(Path(teacher_venv), progress=_progress)


def label_config_for(classes) -> str:
    choices = "".join(f"<Choice value={quoteattr(label)}/>" for label in classes)
    return ('<View><Text name="text" value="$text"/>'
            f'<Choices name="label" toName="text" choice="single" showInline="true">{choices}</Choices></View>')


def demo_tasks(dataset, seed_examples: int) -> list[dict]:
    """Return Label Studio task dicts; the first `seed_examples` (spread over classes) carry an annotation."""
    seeded = set()
    per_class: dict[str, int] = {}
    quota = max(1, seed_examples // max(1, len(dataset.classes)))
    for index, label in enumerate(dataset.labels):
        if len(seeded) >= seed_examples:
            break
        if per_class.get(label, 0) < quota:
            per_class[label] = per_class.get(label, 0) + 1
            seeded.add(index)
    tasks = []
    for index, (text, label) in enumerate(zip(dataset.texts, dataset.labels)):
        task = {"data": {"text": text, "corpus_index": index}}
        if index in seeded:
            task["annotations"] = [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                "value": {"choices": [label]}}]}]
        tasks.append(task)
    return tasks


def _redis_url() -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        from redis import Redis

        Redis.from_url(url, socket_connect_timeout=1).ping()
        return url
    except Exception:  # no Redis: the server runs jobs itself
        return ""


def _wait_for_round(model_dir: Path, project_id: int, timeout: float, processes) -> dict:
    from .store import ProjectStore

    store = ProjectStore(model_dir)
    started = time.monotonic()
    next_note = 0.0
    while time.monotonic() - started < timeout:
        rounds = store.rounds(project_id)
        if rounds:
            return rounds[-1]
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.name} exited; see {process.log_path}")
        elapsed = time.monotonic() - started
        if elapsed >= next_note:
            _progress(f"first round running: picking tasks and asking the teacher ({elapsed:.0f} s)")
            next_note += 10
        time.sleep(1)
    raise TimeoutError(f"the first round did not finish in {timeout:.0f} s; see the worker log in {model_dir.parent}")


def run_demo(args) -> int:
    from .datasets import load_dataset
    from .ls.launcher import LabelStudioServer, connect_backend, create_project, ensure_label_studio

    work_dir = Path(args.work_dir).resolve()
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = []

    def stop_all(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_all)
    try:
        _progress(f"loading dataset {args.dataset}")
        dataset = load_dataset(args.dataset, limit=args.limit or None, seed=0)
        _progress(f"{len(dataset.texts)} texts, classes {list(dataset.classes)}")

        ensure_label_studio(Path(args.ls_venv), progress=_progress)
        teacher_env = _start_teacher(args, logs, started)

        ls_port = free_port(args.label_studio_port)
        _progress(f"starting Label Studio on 127.0.0.1:{ls_port} (first start runs migrations: 30-40 s)")
        label_studio = LabelStudioServer(Path(args.ls_venv), work_dir / "label-studio", port=ls_port,
                                         username=DEMO_USER, password=DEMO_PASSWORD, token=DEMO_TOKEN)
        label_studio.start()
        started.append(label_studio)

        model_dir = work_dir / "model_dir"
        redis_url = _redis_url()
        backend_port = free_port(args.backend_port)
        env = dict(os.environ, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=DEMO_TOKEN,
                   MODEL_DIR=str(model_dir), REDIS_URL=redis_url, MRARU_QUEUE_NAME=f"mraru-demo-{os.getpid()}",
                   PYTHONUNBUFFERED="1", **teacher_env)
        backend = ManagedProcess("backend", [sys.executable, "-m", "backend.cli", "serve", "--port",
                                             str(backend_port)], env, logs / "backend.log")
        started.append(backend)
        backend_url = f"http://127.0.0.1:{backend_port}"
        wait_for_http(backend_url + "/health", process=backend)
        if redis_url:
            started.append(ManagedProcess("worker", [sys.executable, "-m", "backend.cli", "worker"], env,
                                          logs / "worker.log"))
        _progress(f"backend on {backend_url} ({'rq worker on ' + redis_url if redis_url else 'embedded queue'})")

        title = f"M-RARU demo: {dataset.name}"
        tasks = demo_tasks(dataset, args.seed_examples)
        _progress(f"creating project {title!r} with {len(tasks)} tasks")
        project_id = create_project(label_studio.url, DEMO_TOKEN, title, label_config_for(dataset.classes), tasks)
        connect_backend(label_studio.url, DEMO_TOKEN, project_id, backend_url, "mraru")
        record = _wait_for_round(model_dir, project_id, 1800, [p for p in started if isinstance(p, ManagedProcess)])

        _print_instructions(label_studio.url, project_id, record)
        if args.exit_after_round:
            return 0
        while True:
            time.sleep(1)
            for process in started:
                if isinstance(process, ManagedProcess) and process.poll() is not None:
                    _progress(f"{process.name} exited; see {process.log_path}")
                    return 1
    except KeyboardInterrupt:
        _progress("stopping")
        return 0
    finally:
        for process in reversed(started):
            process.stop()
        _progress("everything the demo started has stopped")


def _start_teacher(args, logs: Path, started: list) -> dict:
    """Start the local teacher unless OPENAI_BASE_URL names one; return the backend's teacher env."""
    if os.environ.get("OPENAI_BASE_URL"):
        _progress(f"using the teacher at OPENAI_BASE_URL ({os.environ.get('MRARU_TEACHER_MODEL', 'gpt-4o-mini')})")
        return {}
    from .teacher.local import LocalTeacherServer, ensure_local_teacher

    gguf = ensure_local_teacher(Path(args.teacher_venv), progress=_progress)
    port = free_port(args.teacher_port)
    _progress(f"starting the local teacher (Gemma 3 270M, llama.cpp) on 127.0.0.1:{port}")
    teacher = LocalTeacherServer(Path(args.teacher_venv), gguf, port, alias=LOCAL_TEACHER_ALIAS,
                                 log_path=logs / "teacher.log")
    teacher.start()
    started.append(teacher)
    return {"OPENAI_BASE_URL": teacher.base_url, "OPENAI_API_KEY": "local-teacher-needs-no-key",
            "MRARU_TEACHER_MODEL": LOCAL_TEACHER_ALIAS, "MRARU_TEACHER_MODE": "completion"}


def _print_instructions(url: str, project_id: int, record: dict) -> None:
    usage = record.get("teacher_usage") or {}
    lines = [
        "",
        "Label Studio is ready.",
        f"  URL:      {url}/projects/{project_id}/data?tab={record.get('view_id')}",
        f"  Login:    {DEMO_USER} / {DEMO_PASSWORD}",
        f"  Round 1:  {len(record.get('task_ids', []))} tasks picked, {record.get('prelabelled', 0)} pre-labelled "
        f"by the teacher ({json.dumps(usage)})",
        "What to click:",
        "  1. Log in, open the project: the Data Manager shows the \"M-RARU queue\" tab.",
        "  2. In that tab open the dropdown beside \"Label All Tasks\" and choose \"Label Tasks As Displayed\":",
        "     the picked tasks come first, in the order M-RARU chose them, with the teacher's answer pre-selected.",
        "  3. Check or fix the label and press Submit. Each submission retrains the student;",
        "     a new round of picks and pre-labels joins the queue after each retrain.",
        "Press Ctrl-C to stop everything the demo started.",
    ]
    print("\n".join(lines), flush=True)
