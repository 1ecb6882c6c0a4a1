"""Logging set-up, done once at each process entry point."""

import logging
import os


def configure_logging(level: str | None = None) -> None:
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    # httpx logs every request line at INFO, which floods the worker log during teacher rounds.
    # The openai client logs through "httpx2" where it bundles its own copy.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
