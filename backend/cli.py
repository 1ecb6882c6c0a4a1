"""The `mraru` command: `serve`, `worker` and `demo`."""

import argparse
import logging
import os
import sys

from .config import ConfigError, Settings, env_names
from .logs import configure_logging

logger = logging.getLogger(__name__)


def _env_help() -> str:
    lines = ["environment variables (defaults in brackets):"]
    for name, default in env_names():
        lines.append(f"  {name} [{default}]")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mraru", description="Label Studio ML backend with M-RARU sampling")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ML backend HTTP server",
                                epilog=_env_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9090, help="port to bind (default 9090)")
    serve.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")),
                       help="gunicorn worker processes (env WORKERS, default 1; >1 needs REDIS_URL)")
    serve.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "8")),
                       help="threads per worker process (env THREADS, default 8)")
    serve.add_argument("--dev", action="store_true", help="use Flask's development server instead of gunicorn")

    worker = commands.add_parser("worker", help="run an rq worker for this backend's queue (needs REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")

    prepare = commands.add_parser("prepare", help="install Label Studio 1.23.2 and the local llama.cpp teacher "
                                                  "into their own virtual environments, if missing")
    prepare.add_argument("--ls-venv", default=".venv-ls", help="Label Studio's virtual environment")
    prepare.add_argument("--teacher-venv", default=".venv-teacher", help="the local teacher's virtual environment")

    demo = commands.add_parser("demo", help="start Label Studio, the backend, a worker and a local teacher "
                                            "on 127.0.0.1 with a real corpus")
    from .demo import add_arguments

    add_arguments(demo)
    simulate = commands.add_parser("simulate", help="measure M-RARU against baselines offline on labelled corpora")
    from .simulate.cli import add_arguments as add_simulate_arguments

    add_simulate_arguments(simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "worker":
            return worker(args)
        if args.command == "simulate":
            from .simulate.cli import run as run_simulate

            return run_simulate(args)
        if args.command == "prepare":
            from .demo import prepare

            prepare(args.ls_venv, args.teacher_venv)
            return 0
        from .demo import run_demo

        return run_demo(args)
    except ConfigError as exc:
        print(f"mraru: configuration error: {exc}", file=sys.stderr)
        return 2


def serve(args) -> int:
    settings = Settings.from_env()
    if args.workers > 1 and not settings.redis_url:
        raise ConfigError(f"--workers={args.workers} needs REDIS_URL: without Redis each process would run "
                          "its own job queue; set REDIS_URL or use --workers 1")
    from .server import create_app

    app = create_app(settings)
    logger.info("serving on http://%s:%s (model_dir=%s, queue=%s)", args.host, args.port,
                settings.model_dir, "redis" if settings.redis_url else "embedded")
    if args.dev:
        app.run(host=args.host, port=args.port, threaded=True)
        return 0
    from .gunicorn_app import run_gunicorn

    services = app.extensions["mraru"]

    def start_queue():
        # Building the queue starts its thread that re-queues owed work after a restart. It must
        # start after gunicorn forks the worker, because threads do not survive a fork.
        if settings.redis_url:
            services.queue

    run_gunicorn(app, host=args.host, port=args.port, workers=args.workers, threads=args.threads,
                 on_worker_start=start_queue)
    return 0


def worker(args) -> int:
    settings = Settings.from_env()
    if not settings.redis_url:
        raise ConfigError("mraru worker needs REDIS_URL (e.g. redis://127.0.0.1:6379/0); without it the "
                          "server runs jobs itself")
    from redis import Redis
    from rq import Queue, Worker

    # Imported here so forked job processes inherit scikit-learn and the loop already loaded.
    from . import loop, students  # noqa: F401

    connection = Redis.from_url(settings.redis_url)
    queue = Queue(settings.queue_name, connection=connection)
    logger.info("worker listening on queue %s", settings.queue_name)
    Worker([queue], connection=connection).work(burst=args.burst, with_scheduler=True,
                                               logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
