"""Running one step attempt: in this thread, or in a worker thread when it has a deadline.

A BaseException the step's own code raises (`KeyboardInterrupt`, `SystemExit`, a custom
subclass: stops.py) is the step's failure. It is carried from where the code runs to where
the attempt's outcome is decided as an ordinary exception (`Carried`), because on its way
asyncio and the thread hand-offs would take it for the end of the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable
from functools import lru_cache
from types import TracebackType
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections

from ..exceptions import StepTimeout
from . import stops

# Set while a step's function runs, so that wf.step/wf.sleep inside it can be refused.
IN_STEP: contextvars.ContextVar[bool] = contextvars.ContextVar("durable_workflows_in_step", default=False)


class Carried(Exception):
    """A BaseException from step code, on its way to the attempt's outcome (`failure`)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def failure(error: BaseException) -> BaseException | None:
    """What an attempt that raised `error` failed with: the step's own error, or None for a
    signal that goes on unwinding (the engine's, a stop of the worker, a cancel of the
    run's own task)."""
    if isinstance(error, Carried):
        return error.error
    return error if isinstance(error, Exception) else None


def attempt(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
            timeout: float | None, describe: str) -> tuple[bool, Any]:
    """`run_sync`'s outcome: (True, its value) or (False, the step's error)."""
    try:
        return True, run_sync(fn, args, kwargs, timeout, describe)
    except BaseException as raised:
        error = failure(raised)
        if error is None:
            raise
    # Handed back outside the except block, so that raising it later chains nothing to it.
    return False, error


async def attempt_async(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                        timeout: float | None, describe: str, is_coroutine: bool,
                        own_thread: bool) -> tuple[bool, Any]:
    """`run_async`'s outcome: (True, its value) or (False, the step's error)."""
    try:
        return True, await run_async(fn, args, kwargs, timeout, describe, is_coroutine, own_thread)
    except BaseException as raised:
        error = failure(raised)
        if error is None:
            raise
    return False, error


class step_scope:  # noqa: N801 - used as a function: `with step_scope():`
    """Where a step's own code runs: primitives are refused (IN_STEP), and a BaseException
    it raises that is its failure (stops.py) is carried out as one. In an awaited step a
    CancelledError is the step's own unless the task is being cancelled from outside (its
    deadline, or the run's end). (A class rather than a generator: it wraps every step.)"""

    __slots__ = ("awaited", "token")

    def __init__(self, *, awaited: bool = False) -> None:
        self.awaited = awaited

    def __enter__(self) -> None:
        self.token = IN_STEP.set(True)

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if error is None or isinstance(error, Exception):
                return
            if self.awaited and isinstance(error, asyncio.CancelledError):
                if _cancelled_from_outside():
                    return
                raise Carried(error) from None
            if stops.is_failure(error):
                raise Carried(error) from None
        finally:
            IN_STEP.reset(self.token)


def call_in_scope(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    with step_scope():
        return fn(*args, **kwargs)


def run_sync(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
    timeout: float | None, describe: str,
) -> Any:
    """Call `fn`; with a timeout, in a daemon thread that is abandoned at the deadline.

    Python cannot stop a thread, so a timed-out attempt may still finish its work in the
    background; its result is thrown away. Steps with timeouts should be idempotent.
    """
    timeout = _bounded(timeout)
    if is_coroutine_function(fn):
        # An async step in a sync workflow: run it on an event loop of its own, cancelled
        # at its deadline like any async step.
        return async_to_sync(run_async)(fn, args, kwargs, timeout, describe, True)
    if timeout is None:
        return call_in_scope(fn, args, kwargs)
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["value"] = context.run(call_in_scope, fn, args, kwargs)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, name=f"durable-step {describe}", daemon=True)
    thread.start()
    thread.join(max(timeout, 0))
    if thread.is_alive():
        raise StepTimeout(f"{describe} ran past its {_fmt(timeout)} timeout")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def _in_own_thread(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   timeout: float | None, describe: str) -> Any:
    try:
        return run_sync(fn, args, kwargs, timeout, describe)
    finally:
        connections.close_all()


def is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """`async def` functions, and objects whose `__call__` is one."""
    try:
        return _is_coroutine_function(fn)
    except TypeError:  # an unhashable callable
        return _inspect_coroutine_function(fn)


def _inspect_coroutine_function(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


# A workflow calls the same few step functions again and again; inspect takes a few µs each
# time. Bounded, so that bound methods (a new object per access) cannot pile up.
_is_coroutine_function = lru_cache(maxsize=256)(_inspect_coroutine_function)


async def run_async(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
    timeout: float | None, describe: str, is_coroutine: bool, own_thread: bool = False,
) -> Any:
    """Await an async step (cancelled at its deadline), or run a sync one in a thread: the
    run's own (with its connection), or, beside other primitives under way, a thread of its
    own with a connection of its own, closed when the step ends."""
    timeout = _bounded(timeout)
    if not is_coroutine:
        from asgiref.sync import sync_to_async

        if timeout is None and not own_thread:
            return await sync_to_async(call_in_scope, thread_sensitive=True)(fn, args, kwargs)
        return await asyncio.to_thread(_in_own_thread, fn, args, kwargs, timeout, describe)

    async def scoped() -> Any:
        with step_scope(awaited=True):
            return await fn(*args, **kwargs)

    if timeout is None:
        return await scoped()
    try:
        return await asyncio.wait_for(scoped(), max(timeout, 0))
    except asyncio.TimeoutError:
        raise StepTimeout(f"{describe} ran past its {_fmt(timeout)} timeout") from None


def _cancelled_from_outside() -> bool:
    """Whether the task running a step is being cancelled, rather than the step's code
    raising CancelledError itself. (Python 3.10 cannot tell: every cancel is taken as one
    from outside.)"""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def _bounded(timeout: float | None) -> float | None:
    """A timeout longer than the platform's clocks can wait for (about 292 years) is none."""
    return None if timeout is not None and timeout >= threading.TIMEOUT_MAX else timeout


def _fmt(seconds: float) -> str:
    return f"{seconds:g}s"
