"""One thread per process renews the leases of the runs in progress.

A run's own writes extend its lease, so the heartbeat only matters while one step runs
longer than HEARTBEAT_SECONDS. One shared thread, started on first use, costs nothing per run.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.db import connections
from django.utils import timezone

from ..conf import settings
from ..models import WorkflowInstance
from ..states import State

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_active: dict[int, tuple[str, int, float]] = {}
_thread: threading.Thread | None = None
_counter = 0


def register(instance_id: str, epoch: int) -> int:
    global _counter, _thread
    with _lock:
        _counter += 1
        key = _counter
        _active[key] = (instance_id, epoch, time.monotonic())
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="durable-heartbeat", daemon=True)
            _thread.start()
    return key


def unregister(key: int) -> None:
    with _lock:
        _active.pop(key, None)


def touched(key: int) -> None:
    """The run wrote and so renewed its lease: no beat is due for a while."""
    with _lock:
        entry = _active.get(key)
        if entry is not None:
            _active[key] = (entry[0], entry[1], time.monotonic())


def _loop() -> None:
    while True:
        interval = float(settings.HEARTBEAT_SECONDS)
        time.sleep(min(1.0, max(interval / 4, 0.05)))
        now = time.monotonic()
        with _lock:
            due = [(k, v) for k, v in _active.items() if now - v[2] >= interval]
        if not due:
            continue
        try:
            for key, (instance_id, epoch, _) in due:
                WorkflowInstance.objects.filter(
                    pk=instance_id, epoch=epoch, state=State.RUNNING
                ).update(
                    lease_expires_at=timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)
                )
                touched(key)
        except Exception:  # a missed beat is retried; the lease has slack for it
            logger.exception("durable_workflows heartbeat failed")
        finally:
            connections.close_all()
