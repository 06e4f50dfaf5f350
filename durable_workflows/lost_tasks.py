"""The first path of `durable_workflows.djangoq.lost_tasks`, kept for the code that imports it."""

from .djangoq.lost_tasks import find_lost_tasks

__all__ = ["find_lost_tasks"]
