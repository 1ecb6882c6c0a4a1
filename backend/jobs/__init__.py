"""Background work: retraining students and running selection rounds, on rq or in-process."""

from .queue import EmbeddedJobQueue, JobKind, RedisJobQueue, make_queue

__all__ = ["EmbeddedJobQueue", "JobKind", "RedisJobQueue", "make_queue"]
