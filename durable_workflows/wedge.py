"""The first path of `durable_workflows.djangoq.wedge`, kept for the code that imports it."""

from .djangoq.wedge import (
    SETUP_PID,
    SIBLINGS_EXIT_SECONDS,
    STUCK,
    WEDGE_SECONDS,
    Proc,
    QueueWatch,
    end_cluster,
    process_table,
)

__all__ = ["SETUP_PID", "SIBLINGS_EXIT_SECONDS", "STUCK", "WEDGE_SECONDS", "Proc", "QueueWatch", "end_cluster",
           "process_table"]
