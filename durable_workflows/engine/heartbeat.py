"""One thread per process renews the leases of the runs in progress.

A run's own writes extend its lease, so the heartbeat only matters while one step (or the
code between two steps) runs longer than HEARTBEAT_SECONDS. One shared thread, started on
first use, costs nothing per run. Each beat also tells the run what it could not see from
inside a long step: that a cancel was requested, or that another executor took the
instance over. The run checks both before its next step starts.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from django.db import connections

from ..conf import settings

if TYPE_CHECKING:
    from .lease import Lease

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_active: set[Lease] = set()
_thread: threading.Thread | None = None


def register(lease: Lease) -> Lease:
    global _thread
    with _lock:
        _active.add(lease)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="durable-heartbeat", daemon=True)
            _thread.start()
    return lease


def unregister(lease: Lease) -> None:
    with _lock:
        _active.discard(lease)


def beat(lease: Lease) -> None:
    """Extend the lease if the run still owns the instance, and learn whether a cancel was
    requested, in one statement.

    The owner is checked too: a lease the run gave up (or a recovery scan reserved) is not
    extended by a beat that was already on its way. A beat that waits on a row lock gives up
    after half a heartbeat, so that one locked row does not stop the beats of other runs.
    """
    cancel = lease.store.renew(lease)
    if cancel is None:
        lease.lost = True
        return
    lease.cancel_requested = cancel
    lease.renewed()


def _loop() -> None:
    while True:
        interval = float(settings.HEARTBEAT_SECONDS)
        time.sleep(min(1.0, max(interval / 4, 0.05)))
        now = time.monotonic()
        with _lock:
            due = [lease for lease in _active if now - lease.renewed_at >= interval]
        if not due:
            continue
        try:
            for lease in due:
                with _lock:
                    if lease not in _active:  # its run ended meanwhile
                        continue
                beat(lease)
        except Exception:  # a missed beat is retried; the lease has slack for it
            logger.exception("durable_workflows heartbeat failed")
        finally:
            connections.close_all()
