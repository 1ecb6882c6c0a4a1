"""Label Studio access: a REST client for the backend's jobs and a launcher for a local instance."""

from backend.ls.client import LabelStudioClient, LabelStudioError

__all__ = ["LabelStudioClient", "LabelStudioError"]
