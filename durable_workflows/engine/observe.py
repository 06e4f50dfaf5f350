"""Where a run and a step attempt begin and end, for the observers installed in this process.

Metrics (durable_workflows.metrics) and tracing (durable_workflows.tracing) register an
`Observer` here when their library is installed; the engine calls these points and knows
nothing of who listens. An observer that raises is logged and skipped: watching a run must
never change it.

The run and the attempt in progress are also kept in context variables, so that every log
record of the library says which instance, workflow and position it is about (logs.py).
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

logger = logging.getLogger("durable_workflows")


@dataclass
class RunInfo:
    workflow: str
    instance_id: str
    mode: str
    epoch: int
    #: When the alarm that woke this run was due (a resume), else None: fire-to-resume lag.
    woken_at: datetime | None = None
    #: The W3C trace context stored with the instance at its start ("" when none).
    trace_parent: str = ""
    started: float = field(default_factory=time.perf_counter)
    #: "<type>: <message>" of the failure, when the run failed the instance.
    error: str = ""
    #: Each observer keeps what it needs for the run here (a span), under its own key.
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class AttemptInfo:
    run: RunInfo | None
    workflow: str
    instance_id: str
    name: str
    position: int
    branch: str
    attempt: int
    started: float = field(default_factory=time.perf_counter)
    state: dict[str, Any] = field(default_factory=dict)


class Observer:
    """Override what you need; every method is called inside a guard."""

    def started(self) -> dict[str, str]:
        """Fields to store with an instance being started in this context (trace_parent)."""
        return {}

    def run_started(self, run: RunInfo) -> None: ...

    def run_finished(self, run: RunInfo, outcome: str | None, error: BaseException | None) -> None: ...

    def attempt_started(self, attempt: AttemptInfo) -> None: ...

    def attempt_finished(self, attempt: AttemptInfo, error: BaseException | None) -> None: ...


_observers: list[Observer] = []
CURRENT_RUN: contextvars.ContextVar[RunInfo | None] = contextvars.ContextVar("dw_run", default=None)
CURRENT_ATTEMPT: contextvars.ContextVar[AttemptInfo | None] = contextvars.ContextVar("dw_attempt", default=None)


def about(instance_id: str, workflow: str | None = None, position: int | None = None) -> dict[str, Any]:
    """`extra=` for a log record about an instance other than the run in progress (logs.py)."""
    return {"instance_id": instance_id, "workflow": workflow, "position": position}


#: `_observers` as it was last changed, which the hot path reads without copying the list.
_installed: tuple[Observer, ...] = ()


def add_observer(observer: Observer) -> None:
    global _installed
    if observer not in _observers:
        _observers.append(observer)
        _installed = tuple(_observers)


def remove_observer(observer: Observer) -> None:
    global _installed
    if observer in _observers:
        _observers.remove(observer)
        _installed = tuple(_observers)


def _each(method: str, *args: Any) -> None:
    for observer in _installed:
        try:
            getattr(observer, method)(*args)
        except Exception:
            logger.exception("durable_workflows: observer %r failed in %s; the run goes on", observer, method)


def start_fields() -> dict[str, str]:
    fields: dict[str, str] = {}
    for observer in list(_observers):
        try:
            fields.update(observer.started())
        except Exception:
            logger.exception("durable_workflows: observer %r failed at a start", observer)
    return fields


def run_started(info: RunInfo) -> contextvars.Token[RunInfo | None]:
    token = CURRENT_RUN.set(info)
    _each("run_started", info)
    return token


def run_finished(info: RunInfo, token: contextvars.Token[RunInfo | None], outcome: str | None,
                 error: BaseException | None = None) -> None:
    try:
        _each("run_finished", info, outcome, error)
    finally:
        CURRENT_RUN.reset(token)
        CURRENT_ATTEMPT.set(None)  # an attempt the run's end interrupted


def attempt_started(info: AttemptInfo) -> None:
    CURRENT_ATTEMPT.set(info)
    _each("attempt_started", info)


def attempt_finished(info: AttemptInfo | None, error: BaseException | None = None) -> None:
    if info is None:
        return
    if CURRENT_ATTEMPT.get() is info:
        CURRENT_ATTEMPT.set(None)
    _each("attempt_finished", info, error)
