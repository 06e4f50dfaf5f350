"""The `wf` object a workflow function receives, and the rules all its primitives share.

A workflow runs from the top on every run. Each call to a primitive takes the next position;
a position with a finished record returns the recorded outcome, a new one does the work and
records it (steps.py, waits.py). Once the run has stopped (it must wait, it lost its lease,
was cancelled, or the database failed under it), every further primitive raises the same
signal again, so code that runs while the function unwinds (a `finally:`) does nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from asgiref.sync import sync_to_async
from django.utils import timezone

from ..durations import parse_duration
from ..exceptions import (
    LeaseLost,
    NonDeterminismError,
    SerializationError,
    StepScopeError,
    StoreFault,
    Suspend,
    WorkflowTimeout,
)
from ..models import StepRecord
from ..retry import RetryPolicy
from . import children, inbox, runner
from .steps import StepCall
from .waits import Wait, sleep_at

if TYPE_CHECKING:
    from .store import Run

#: The signals that stop a run; once one is raised, the context refuses every primitive.
STOPS = (Suspend, LeaseLost, StoreFault)


class RecordedTime(datetime):
    """A datetime that can also be awaited, so `wf.now()` reads the same in async workflows."""

    def __await__(self):  # type: ignore[override]
        return self
        yield  # pragma: no cover - makes this a generator


class WorkflowContext:
    """What a sync workflow function gets as `wf`."""

    def __init__(self, run: Run, records: dict[int, StepRecord], workflow: str) -> None:
        self._run = run
        self._records = records
        self._position = 0
        #: An error that ends the instance whatever the workflow does (non-determinism).
        self._fatal: BaseException | None = None
        #: The signal that stopped the run, and the wait it stopped at, if any.
        self._stopped: BaseException | None = None
        self._wait: Wait | None = None
        self._clock: datetime = run.instance.created_at
        self.workflow = workflow
        self.instance_id: str = run.instance_id
        self.mode: str = run.mode
        self.attempt: int | None = None

    def __repr__(self) -> str:
        return f"<WorkflowContext {self.workflow} {self.instance_id} mode={self.mode}>"

    # -- public, no I/O ---------------------------------------------------------------
    def now(self) -> datetime:
        """The time recorded for this point of the run: the end of the previous step or
        sleep, or the instance's creation. The same on every replay."""
        value = self._clock
        return RecordedTime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, tzinfo=value.tzinfo,
        )

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self._run.checkpoint.current_meta())

    # -- shared rules ---------------------------------------------------------------------
    def _check_scope(self, primitive: str) -> None:
        if runner.IN_STEP.get():
            raise StepScopeError(
                f"wf.{primitive}() was called inside a running step; workflow primitives "
                f"may only be called from the workflow function itself"
            )
        if self._stopped is not None:
            raise self._stopped
        if self._fatal is not None:
            raise self._fatal
        deadline = self._run.instance.deadline_at
        if deadline is not None and deadline <= timezone.now():
            self._fatal = timed_out(self.workflow, self._run.instance)
            raise self._fatal

    def _enter(self, primitive: str) -> int:
        """Check that `primitive` may run now, and give it the next position."""
        self._check_scope(primitive)
        position = self._position
        self._position += 1
        return position

    def _stop(self, signal: BaseException) -> NoReturn:
        self._stopped = signal
        raise signal

    def _suspend(self, wait: Wait) -> NoReturn:
        """Stop the run at `wait`; the executor commits it once the function has unwound."""
        self._wait = wait
        self._stop(Suspend())

    def _engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call the engine's work for a primitive: a signal it raises stops the run. (Its
        database work turns its own errors into `StoreFault` where it does it; an error a
        replay raises again, a step's `IntegrityError` say, stays the workflow's.)"""
        try:
            return fn(*args)
        except STOPS as signal:
            self._stopped = signal
            raise

    def _replayed(self, position: int, name: str, kind: str) -> StepRecord | None:
        record = self._records.get(position)
        if record is None:
            return None
        if record.name != name or record.kind != kind:
            error = NonDeterminismError(
                f"non-deterministic replay at position {position}: the code now calls "
                f"{kind} {name!r} where the recorded run has {record.kind} {record.name!r}"
            )
            self._fatal = error
            raise error
        return record

    # -- sleep ------------------------------------------------------------------------------
    def _sleep_args(self, duration: timedelta | int | float | str, name: str | None) -> tuple[int, datetime, str]:
        position = self._enter("sleep")
        delta = parse_duration(duration, what="sleep duration", allow_negative=True)
        return position, timezone.now() + delta, name or "sleep"

    def _sleep_until_args(self, when: datetime, name: str | None) -> tuple[int, datetime, str]:
        position = self._enter("sleep_until")
        if not isinstance(when, datetime):
            raise ValueError(f"sleep_until needs a datetime, got {when!r}")
        if timezone.is_naive(when):
            raise ValueError(f"sleep_until needs an aware datetime, got naive {when!r}")
        return position, when, name or "sleep"

    def sleep(self, duration: timedelta | int | float | str, *, name: str | None = None) -> None:
        """Pause durably for `duration`; the process may stop and the run resume elsewhere."""
        sleep_at(self, *self._sleep_args(duration, name))

    def sleep_until(self, when: datetime, *, name: str | None = None) -> None:
        sleep_at(self, *self._sleep_until_args(when, name))

    # -- events -------------------------------------------------------------------------------
    def _wait_args(self, name: str, timeout: Any) -> tuple[int, str, timedelta | None]:
        position = self._enter("wait_for_event")
        return position, inbox.check_name(name), inbox.parse_timeout(timeout)

    def wait_for_event(self, name: str, *, timeout: timedelta | int | float | str | None = None) -> Any:
        """The payload of the oldest event `name` sent to this instance that no earlier wait
        took; the run pauses until one comes. With `timeout`, `EventTimeout` once it passes."""
        return self._engine(inbox.wait_at, self, *self._wait_args(name, timeout))

    # -- children -----------------------------------------------------------------------------
    def start_child(self, workflow: Any, /, *args: Any, instance_id: str | None = None,
                    **kwargs: Any) -> children.ChildHandle:
        """Start a child instance once (a replay returns the same handle, starting nothing).
        Its id is derived from this instance's id and the position unless given."""
        position = self._enter("start_child")
        return self._engine(children.start_at, self, position, workflow, args, kwargs, instance_id)

    def wait_child(self, child: children.ChildHandle | str) -> Any:
        """The child's result once it has finished; `ChildWorkflowFailed` if it failed,
        `WorkflowCancelled` if it was cancelled. The run pauses until then."""
        position = self._enter("wait_child")
        return self._engine(children.wait_at, self, position, child)

    def run_child(self, workflow: Any, /, *args: Any, instance_id: str | None = None, **kwargs: Any) -> Any:
        """`wait_child(start_child(...))`."""
        return self.wait_child(self.start_child(workflow, *args, instance_id=instance_id, **kwargs))

    # -- meta ---------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        """Publish a small JSON value a client can read while the instance runs. It goes
        out with the run's next write, fenced like it; a replay that sets an older value on
        its way to that write never publishes it."""
        self._check_scope("set_meta")
        if not isinstance(key, str) or not key:
            raise ValueError(f"meta keys must be non-empty text, got {key!r}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"meta value {key!r} must be plain JSON: {exc}") from None
        checkpoint = self._run.checkpoint
        current = checkpoint.current_meta()
        if key in current and current[key] == value:
            return
        checkpoint.meta = {**current, key: value}

    # -- step ---------------------------------------------------------------------------------
    def step(
        self, name: str, fn: Callable[..., Any], /, *args: Any,
        retry: RetryPolicy | None = None, timeout: timedelta | int | float | str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` once and record its result; later runs return the record.

        `name` and `fn` are positional-only, so that a step function may itself take keyword
        arguments called `name` or `fn`; only `retry` and `timeout` are reserved."""
        call = StepCall(self, name, fn, args, kwargs, retry, timeout)
        outcome = self._engine(call.replay)
        if outcome.returns:
            return outcome.value
        while True:
            remaining = self._engine(call.start_attempt)
            try:
                value = runner.run_sync(fn, args, kwargs, remaining, call.describe())
            except Exception as exc:
                call.failed(exc)  # raises unless it retries now
                continue
            finally:
                self.attempt = None
            return self._engine(call.succeeded, value)


class AsyncWorkflowContext(WorkflowContext):
    """What an `async def` workflow gets as `wf`: the same primitives, awaited.

    Each primitive checks where it is called before it returns its awaitable, so a sync step
    that calls `wf.step(...)` gets StepScopeError at once, as in a sync workflow, rather than
    an un-awaited coroutine. Database work runs through `sync_to_async(thread_sensitive=True)`,
    which hands it back to the thread that started the run, so every write uses the run's own
    connection. One primitive runs at a time: positions are handed out in call order, so two
    in flight at once (`asyncio.gather`) would record whichever finished first.
    """

    _busy: str | None = None

    def sleep(self, duration: timedelta | int | float | str, *, name: str | None = None) -> Awaitable[None]:  # type: ignore[override]
        return self._sleep_async(*self._sleep_args(duration, name))

    def sleep_until(self, when: datetime, *, name: str | None = None) -> Awaitable[None]:  # type: ignore[override]
        return self._sleep_async(*self._sleep_until_args(when, name))

    async def _sleep_async(self, position: int, wake_at: datetime, name: str) -> None:
        with self._one_at_a_time("sleep"):
            sleep_at(self, position, wake_at, name)

    def wait_for_event(self, name: str, *, timeout: timedelta | int | float | str | None = None) -> Awaitable[Any]:  # type: ignore[override]
        return self._wait_async(*self._wait_args(name, timeout))

    async def _wait_async(self, position: int, name: str, timeout: timedelta | None) -> Any:
        with self._one_at_a_time("wait_for_event"):
            return await sync_to_async(self._engine, thread_sensitive=True)(inbox.wait_at, self, position, name, timeout)

    def start_child(self, workflow: Any, /, *args: Any, instance_id: str | None = None,  # type: ignore[override]
                    **kwargs: Any) -> Awaitable[children.ChildHandle]:
        position = self._enter("start_child")
        return self._in_engine("start_child", children.start_at, self, position, workflow, args, kwargs, instance_id)

    def wait_child(self, child: children.ChildHandle | str) -> Awaitable[Any]:  # type: ignore[override]
        position = self._enter("wait_child")
        return self._in_engine("wait_child", children.wait_at, self, position, child)

    async def run_child(self, workflow: Any, /, *args: Any, instance_id: str | None = None,  # type: ignore[override]
                        **kwargs: Any) -> Any:
        return await self.wait_child(await self.start_child(workflow, *args, instance_id=instance_id, **kwargs))

    async def _in_engine(self, primitive: str, fn: Callable[..., Any], *args: Any) -> Any:
        with self._one_at_a_time(primitive):
            return await sync_to_async(self._engine, thread_sensitive=True)(fn, *args)

    def set_meta(self, key: str, value: Any) -> Awaitable[None]:  # type: ignore[override]
        super().set_meta(key, value)
        return _done()

    def step(  # type: ignore[override]
        self, name: str, fn: Callable[..., Any], /, *args: Any,
        retry: RetryPolicy | None = None, timeout: timedelta | int | float | str | None = None,
        **kwargs: Any,
    ) -> Awaitable[Any]:
        call = StepCall(self, name, fn, args, kwargs, retry, timeout)
        return self._step_async(call)

    async def _step_async(self, call: StepCall) -> Any:
        with self._one_at_a_time("step"):
            db = sync_to_async(self._engine, thread_sensitive=True)
            outcome = await db(call.replay)
            if outcome.returns:
                return outcome.value
            is_coroutine = runner.is_coroutine_function(call.fn)
            while True:
                remaining = await db(call.start_attempt)
                try:
                    value = await runner.run_async(
                        call.fn, call.args, call.kwargs, remaining, call.describe(), is_coroutine
                    )
                except Exception as exc:
                    call.failed(exc)  # raises unless it retries now
                    continue
                finally:
                    self.attempt = None
                return await db(call.succeeded, value)

    def _one_at_a_time(self, primitive: str) -> _Exclusive:
        return _Exclusive(self, primitive)


class _Exclusive:
    """Marks an async primitive in flight, and refuses a second one started meanwhile."""

    def __init__(self, wf: AsyncWorkflowContext, primitive: str) -> None:
        self.wf = wf
        self.primitive = primitive

    def __enter__(self) -> None:
        busy = self.wf._busy
        if busy is not None:
            error = StepScopeError(
                f"wf.{self.primitive}() started while wf.{busy}() was still running: await "
                f"each workflow primitive before starting the next (asyncio.gather and "
                f"create_task of primitives are not supported)"
            )
            self.wf._fatal = error
            raise error
        self.wf._busy = self.primitive

    def __exit__(self, *exc_info: Any) -> None:
        self.wf._busy = None


async def _done() -> None:
    return None


def timed_out(workflow: str, instance: Any) -> WorkflowTimeout:
    limit = instance.deadline_at - instance.created_at
    return WorkflowTimeout(
        f"workflow {workflow!r} ran past its timeout of {limit} (deadline "
        f"{instance.deadline_at:%Y-%m-%d %H:%M:%S %Z})"
    )
