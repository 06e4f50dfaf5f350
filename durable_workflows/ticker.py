"""The first path of `durable_workflows.djangoq.ticker`, kept for the code that imports it.

The ticker's state (the running thread, whether this process is a worker) is that module's:
read it through these functions, which are the same objects."""

from .djangoq.ticker import (
    EXIT_WAIT_SECONDS,
    ORPHAN_EXIT_SECONDS,
    PARENT_POLL_SECONDS,
    PURGE_INTERVAL,
    PURGE_PER_PASS,
    Ticker,
    connect,
    current,
    ensure_running,
    on_worker_spawn,
    start,
    stop,
)

__all__ = ["EXIT_WAIT_SECONDS", "ORPHAN_EXIT_SECONDS", "PARENT_POLL_SECONDS", "PURGE_INTERVAL", "PURGE_PER_PASS",
           "Ticker", "connect", "current", "ensure_running", "on_worker_spawn", "start", "stop"]
