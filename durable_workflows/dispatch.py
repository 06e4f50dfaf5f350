"""How the engine hands an instance to whatever runs it.

The engine never imports the task queue: it calls the dispatcher named by the DISPATCHER
setting, through the port it declares (`engine.ports.Dispatcher`). The default is django-q2
(`durable_workflows.djangoq.dispatcher.DjangoQDispatcher`); `InlineDispatcher` runs instances
in the calling thread, for scripts and tests without a queue; `TasksDispatcher`
(`tasks_dispatcher`) sends them through another `django.tasks` backend.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from . import database
from .engine.ports import BaseDispatcher, Dispatcher, adapt
from .tasks_dispatcher import TasksDispatcher

__all__ = ["DISPATCHER_OVERRIDE", "BaseDispatcher", "Dispatcher", "InlineDispatcher", "TasksDispatcher",
           "get_dispatcher", "on_commit"]


class InlineDispatcher(BaseDispatcher):
    """Runs the instance at once, in this thread."""

    synchronous = True

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        from .engine import execute

        execute(instance_id, mode, epoch)


#: A dispatcher that replaces the DISPATCHER setting where it is set (durable_workflows.testing).
DISPATCHER_OVERRIDE: contextvars.ContextVar[Dispatcher | None] = contextvars.ContextVar(
    "durable_workflows_dispatcher", default=None)


def get_dispatcher() -> Dispatcher:
    """The dispatcher in force, with every member of the port: one of a project's own that
    does not subclass BaseDispatcher gets its defaults for what it leaves out."""
    from .conf import settings

    override = DISPATCHER_OVERRIDE.get()
    if override is not None:
        return adapt(override)
    dispatcher: Any = settings.DISPATCHER
    return adapt(dispatcher() if isinstance(dispatcher, type) else dispatcher)


def on_commit(fn: Callable[[], Any]) -> None:
    """Run `fn` once the current transaction commits, or now outside one.

    Inside Django's TestCase, whose transaction never commits, the test's own atomic blocks
    are treated as committed, so that `start()` in a test behaves as it does in production.
    """
    db = database.connection()
    blocks = getattr(db, "atomic_blocks", [])
    if db.in_atomic_block and all(getattr(b, "_from_testcase", False) for b in blocks):
        fn()
    else:
        database.on_commit(fn)
