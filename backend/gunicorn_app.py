"""Run the Flask app under gunicorn from Python, so `mraru serve` needs no separate config file."""

from gunicorn.app.base import BaseApplication


class _Application(BaseApplication):
    def __init__(self, app, options: dict):
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._app


def run_gunicorn(app, *, host: str, port: int, workers: int, threads: int, on_worker_start=None) -> None:
    """Serve `app`; `on_worker_start()` runs in each worker process after the fork."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 120,
        "accesslog": None,
        "preload_app": False,
    }
    if on_worker_start is not None:
        options["post_worker_init"] = lambda worker: on_worker_start()
    _Application(app, options).run()
