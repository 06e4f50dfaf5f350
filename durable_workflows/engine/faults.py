"""The line between the engine's database work and the workflow's.

A step's own database errors are the step's: they fail it, retry it, or reach the
workflow's `except`. An error of the engine's own reads and writes (a checkpoint, a claim,
a pause) says nothing about the workflow, so it is turned into `StoreFault`, which unwinds
the run past any `except Exception:` and leaves the instance to recovery.
"""

from __future__ import annotations

import logging
from types import TracebackType

from django.db import Error

from .. import database
from ..exceptions import StoreFault

logger = logging.getLogger("durable_workflows")


class engine_io:  # noqa: N801 - used as a function: `with engine_io():`
    """Wrap the engine's own database work: its errors become `StoreFault`. (A class rather
    than a generator: it wraps every checkpoint, and this costs a third as much.)"""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is not None and isinstance(error, Error):
            raise StoreFault(error) from error


def after_fault(fault: StoreFault) -> None:
    """After a fault that stopped a run: inside a transaction the caller opened (a run
    started in `atomic()`, a test case), the error is the caller's too, for their
    transaction may be broken by it, so it is raised. Otherwise the connection is dropped if
    it is broken, so the next run opens a new one."""
    db = database.connection()
    if db.in_atomic_block:
        raise fault.error
    try:
        db.close_if_unusable_or_obsolete()
    except Exception:  # closing a dead connection may fail too; it is dropped either way
        logger.debug("durable_workflows: closing a broken connection failed", exc_info=True)
