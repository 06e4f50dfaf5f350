"""A BaseException from workflow or step code: the engine's own signal, or a failure.

The engine unwinds runs with BaseExceptions of its own (`Suspend`, `ContinueAsNew`, `LeaseLost`,
`StoreFault`, a branch's `Aborted`), and a worker told to stop raises one into whatever it
runs (`WorkerShutdown` from the worker's SIGTERM handler; the task queue's own timeout,
which its glue adds with `add_stop`). Those stop the run without an outcome and go on
unwinding. Any other BaseException that step or workflow code raises (`KeyboardInterrupt`,
`SystemExit`, a custom subclass) says something about that code, not about the process: it
fails the attempt like an exception, recorded with its type. Left to unwind, it would end
the worker process, and each recovery of the instance would end another.
"""

from __future__ import annotations

from ..exceptions import ContinueAsNew, LeaseLost, StoreFault, Suspend, WorkerShutdown
from .lanes import Aborted

#: The engine's control flow within a run.
RUN_SIGNALS: tuple[type[BaseException], ...] = (Suspend, ContinueAsNew, LeaseLost, StoreFault, Aborted)
_stops: tuple[type[BaseException], ...] = (*RUN_SIGNALS, WorkerShutdown)


def add_stop(cls: type[BaseException]) -> None:
    """Count `cls` as a stop of the process rather than a failure of the code it interrupts."""
    global _stops
    if cls not in _stops:
        _stops = (*_stops, cls)


def is_failure(error: BaseException) -> bool:
    """Whether `error` fails the step or the workflow that raised it: anything but a stop."""
    return isinstance(error, Exception) or not isinstance(error, _stops)


def is_failure_class(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, BaseException) and (
        issubclass(cls, Exception) or not issubclass(cls, _stops))
