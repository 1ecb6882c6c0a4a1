"""Entry points that rq workers import and run."""

import logging

from .queue import JobKind

logger = logging.getLogger(__name__)


def run_job(kind: str, project_id: int) -> dict:
    """Run one retrain or round job for `project_id` in this worker process."""
    from rq import get_current_job

    from ..loop import run_job_kind
    from ..services import process_services

    job = get_current_job()
    return run_job_kind(process_services(), JobKind(kind), int(project_id), job.id if job else None)
