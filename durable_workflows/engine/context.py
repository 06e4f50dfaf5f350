"""The `wf` object a workflow function receives, and the replay rules behind its primitives.

A workflow runs from the top on every run. Each call to a primitive takes the next position;
a position with a finished record returns the recorded outcome, a new one does the work and
records it. `Suspend` unwinds the function at a durable wait.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from .. import serialization
from ..durations import parse_duration
from ..exceptions import (
    NonDeterminismError,
    SerializationError,
    StepScopeError,
    StepTimeout,
    Suspend,
)
from ..models import Alarm, AlarmReason, StepKind, StepRecord, StepState
from ..retry import RetryPolicy
from ..states import State
from . import failures, runner
from .store import Run, error_fields

RETRY_NOW = "retry-now"


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
        self._fatal: BaseException | None = None
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
        return dict(self._run.instance.meta or {})

    # -- shared rules ---------------------------------------------------------------------
    def _enter(self, primitive: str) -> int:
        if runner.IN_STEP.get():
            error = StepScopeError(
                f"wf.{primitive}() was called inside a running step; workflow primitives "
                f"may only be called from the workflow function itself"
            )
            raise error
        if self._fatal is not None:
            raise self._fatal
        position = self._position
        self._position += 1
        return position

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

    def _meta_value(self, key: str, value: Any) -> dict[str, Any] | None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"meta keys must be non-empty text, got {key!r}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"meta value {key!r} must be plain JSON: {exc}") from None
        meta = dict(self._run.instance.meta or {})
        if key in meta and meta[key] == value:
            return None
        meta[key] = value
        return meta

    def _pause(self, record: StepRecord, reason: str, event_kind: str | None = None) -> None:
        run = self._run
        if event_kind:
            run.events.add(event_kind, record.position, name=record.name, until=record.wake_at.isoformat())
        run.events.add("workflow.paused", record.position, reason=reason,
                       until=record.wake_at.isoformat())
        alarm = Alarm(
            instance_id=run.instance_id, fire_at=record.wake_at, reason=reason,
            position=record.position, epoch=run.epoch,
        )
        run.dirty[record.position] = record
        run.finish(State.PAUSED, alarm=alarm, lease_owner="", lease_expires_at=None)

    def _due(self, record: StepRecord) -> bool:
        return self._run.woken_position == record.position or (
            record.wake_at is not None and record.wake_at <= timezone.now()
        )

    # -- sleep ------------------------------------------------------------------------------
    def _sleep_txn(self, position: int, wake_at: datetime, name: str) -> bool:
        """Do the work of a sleep; True means the run must suspend."""
        record = self._replayed(position, name, StepKind.SLEEP)
        if record is not None:
            if record.state == StepState.COMPLETED:
                self._clock = record.finished_at or record.wake_at or self._clock
                return False
            if not self._due(record):
                self._pause(record, AlarmReason.SLEEP)
                return True
            now = timezone.now()
            record.state = StepState.COMPLETED
            record.finished_at = now
            self._run.dirty[position] = record
            self._run.events.add("sleep.completed", position, name=name)
            self._clock = now
            return False
        now = timezone.now()
        if wake_at <= now:
            return False
        record = StepRecord(
            instance_id=self._run.instance_id, position=position, name=name,
            kind=StepKind.SLEEP, state=StepState.SLEEPING, started_at=now, wake_at=wake_at,
        )
        self._records[position] = record
        self._pause(record, AlarmReason.SLEEP, "sleep.started")
        return True

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
        position, wake_at, name = self._sleep_args(duration, name)
        if self._sleep_txn(position, wake_at, name):
            raise Suspend()

    def sleep_until(self, when: datetime, *, name: str | None = None) -> None:
        position, wake_at, name = self._sleep_until_args(when, name)
        if self._sleep_txn(position, wake_at, name):
            raise Suspend()

    # -- meta ---------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        """Publish a small JSON value a client can read while the instance runs."""
        if runner.IN_STEP.get():
            raise StepScopeError("wf.set_meta() was called inside a running step")
        meta = self._meta_value(key, value)
        if meta is not None:
            self._run.publish_meta(meta)

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
        outcome = call.replay()
        if outcome is not _RUN:
            return _resolve(outcome)
        while True:
            remaining = call.start_attempt()
            try:
                value = runner.run_sync(fn, args, kwargs, remaining, call.describe())
            except Exception as exc:
                _resolve(call.failed(exc))
                continue
            finally:
                self.attempt = None
            return call.succeeded(value)


class AsyncWorkflowContext(WorkflowContext):
    """What an `async def` workflow gets as `wf`: the same primitives, awaited.

    Each primitive checks where it is called before it returns its awaitable, so a sync step
    that calls `wf.step(...)` gets StepScopeError at once, as in a sync workflow, rather than
    an un-awaited coroutine. Database work runs through `sync_to_async(thread_sensitive=True)`,
    which hands it back to the thread that started the run, so every write uses the run's own
    connection.
    """

    def sleep(self, duration: timedelta | int | float | str, *, name: str | None = None) -> Awaitable[None]:  # type: ignore[override]
        position, wake_at, name = self._sleep_args(duration, name)
        return self._sleep_async(position, wake_at, name)

    def sleep_until(self, when: datetime, *, name: str | None = None) -> Awaitable[None]:  # type: ignore[override]
        position, wake_at, name = self._sleep_until_args(when, name)
        return self._sleep_async(position, wake_at, name)

    async def _sleep_async(self, position: int, wake_at: datetime, name: str) -> None:
        if await sync_to_async(self._sleep_txn, thread_sensitive=True)(position, wake_at, name):
            raise Suspend()

    def set_meta(self, key: str, value: Any) -> Awaitable[None]:  # type: ignore[override]
        if runner.IN_STEP.get():
            raise StepScopeError("wf.set_meta() was called inside a running step")
        meta = self._meta_value(key, value)
        return self._publish_async(meta)

    async def _publish_async(self, meta: dict[str, Any] | None) -> None:
        if meta is not None:
            await sync_to_async(self._run.publish_meta, thread_sensitive=True)(meta)

    def step(  # type: ignore[override]
        self, name: str, fn: Callable[..., Any], /, *args: Any,
        retry: RetryPolicy | None = None, timeout: timedelta | int | float | str | None = None,
        **kwargs: Any,
    ) -> Awaitable[Any]:
        call = StepCall(self, name, fn, args, kwargs, retry, timeout)
        return self._step_async(call)

    async def _step_async(self, call: StepCall) -> Any:
        db = sync_to_async
        outcome = await db(call.replay, thread_sensitive=True)()
        if outcome is not _RUN:
            return _resolve(outcome)
        is_coroutine = runner.is_coroutine_function(call.fn)
        while True:
            remaining = await db(call.start_attempt, thread_sensitive=True)()
            try:
                value = await runner.run_async(
                    call.fn, call.args, call.kwargs, remaining, call.describe(), is_coroutine
                )
            except Exception as exc:
                _resolve(await db(call.failed, thread_sensitive=True)(exc))
                continue
            finally:
                self.attempt = None
            return await db(call.succeeded, thread_sensitive=True)(value)


_RUN = object()
_SUSPEND = object()


class _Cached:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _resolve(outcome: Any) -> Any:
    """Turn a StepCall outcome into a value, a retry, or a suspension."""
    if outcome is _SUSPEND:
        raise Suspend()
    if isinstance(outcome, _Cached):
        return outcome.value
    return outcome


class StepCall:
    """One `wf.step(...)` call: its replay, its attempts, and their records."""

    def __init__(
        self, wf: WorkflowContext, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
        kwargs: dict[str, Any], retry: RetryPolicy | None, timeout: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a step needs a non-empty name, got {name!r}")
        if not callable(fn):
            raise TypeError(f"step {name!r}: {fn!r} is not callable")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"step {name!r}: retry must be a RetryPolicy, got {retry!r}")
        self.timeout = None if timeout is None else parse_duration(timeout, what=f"timeout of step {name!r}").total_seconds()
        self.position = wf._enter("step")
        self.wf = wf
        self.run = wf._run
        self.name = name
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.retry = retry
        self.durable_attempts = retry is not None or self.timeout is not None
        self.record: StepRecord | None = None
        self.attempt = 0
        self.rerun = False
        self.remaining: float | None = None

    def describe(self) -> str:
        return f"step {self.name!r} (attempt {self.attempt})"

    # -- replay -------------------------------------------------------------------------------
    def replay(self) -> Any:
        record = self.wf._replayed(self.position, self.name, StepKind.STEP)
        self.record = record
        if record is None:
            return _RUN
        if record.state == StepState.COMPLETED:
            self.wf._clock = record.finished_at or self.wf._clock
            return _Cached(serialization.loads(record.result))
        if record.state == StepState.FAILED:
            raise failures.rebuild(record)
        self.attempt = record.attempts
        if record.state == StepState.RUNNING:
            # The attempt in flight when the last run stopped. Its deadline survives.
            if record.deadline_at is not None and record.deadline_at <= timezone.now():
                error = StepTimeout(f"{self.describe()} ran past its deadline while its worker was down")
                outcome = self.failed(error)
                return _RUN if outcome == RETRY_NOW else outcome
            self.rerun = True
            if record.deadline_at is not None:
                self.remaining = (record.deadline_at - timezone.now()).total_seconds()
            return _RUN
        if record.state == StepState.WAITING and not self.wf._due(record):
            self.wf._pause(record, AlarmReason.RETRY)
            return _SUSPEND
        return _RUN

    # -- attempts -----------------------------------------------------------------------------
    def start_attempt(self) -> float | None:
        """Count the attempt; store it first when it must survive a restart. Returns the
        seconds it may run."""
        run = self.run
        now = timezone.now()
        if self.rerun:
            self.rerun = False
        else:
            self.attempt += 1
            self.remaining = self.timeout
        self.wf.attempt = self.attempt
        record = self.record
        if record is None:
            record = StepRecord(
                instance_id=run.instance_id, position=self.position, name=self.name,
                kind=StepKind.STEP, started_at=now,
            )
            self.record = record
            self.wf._records[self.position] = record
        record.state = StepState.RUNNING
        record.attempts = self.attempt
        record.attempt_started_at = now
        record.wake_at = None
        # An attempt that is stored first is signalled once that commits; any other is
        # signalled as it starts, its row going out with the step's outcome.
        started = run.events.add if self.durable_attempts else run.events.announce
        started("step.started", self.position, name=self.name, attempt=self.attempt)
        if self.remaining is not None:
            record.deadline_at = now + timedelta(seconds=self.remaining)
            run.events.add("timeout.set", self.position, name=self.name, attempt=self.attempt,
                           deadline=record.deadline_at.isoformat())
        if self.durable_attempts:
            run.save(record)
        return self.remaining

    def succeeded(self, value: Any) -> Any:
        run = self.run
        try:
            stored = serialization.dumps(value, f"the result of step {self.name!r}")
        except SerializationError as error:
            self.wf._fatal = error
            raise
        record = self.record
        assert record is not None
        now = timezone.now()
        record.state = StepState.COMPLETED
        record.result = stored
        record.finished_at = now
        record.deadline_at = None
        record.error_type = record.error_message = record.error_traceback = record.error_replay = ""
        run.events.add("step.completed", self.position, name=self.name, attempt=self.attempt)
        run.step_finished = True
        run.save(record)
        self.wf._clock = now
        # Hand back the stored form, so the first run sees exactly what every replay will.
        return serialization.loads(stored)

    def failed(self, error: BaseException) -> Any:
        """Record a failed attempt and decide: retry now, suspend until a retry is due, or
        raise the error into the workflow."""
        run = self.run
        record = self.record
        assert record is not None
        now = timezone.now()
        record.__dict__.update(error_fields(error))
        record.error_replay = failures.replay_info(error)
        record.deadline_at = None
        run.events.add("step.failed", self.position, name=self.name, attempt=self.attempt,
                       error=f"{type(error).__name__}: {error}")
        if isinstance(error, StepTimeout):
            run.events.add("timeout.exceeded", self.position, name=self.name, attempt=self.attempt)
        if isinstance(error, StepScopeError):
            self.wf._fatal = error
        policy = self.retry
        if policy is not None and policy.should_retry(error) and not isinstance(error, StepScopeError):
            elapsed = (now - (record.started_at or now)).total_seconds()
            limit = policy.max_duration_seconds
            if self.attempt < policy.max_attempts and (limit is None or elapsed < limit):
                delay = policy.delay(self.attempt)
                run.events.add("retry.scheduled", self.position, name=self.name,
                               attempt=self.attempt + 1, delay=delay)
                record.state = StepState.WAITING
                record.wake_at = now + timedelta(seconds=delay)
                if delay <= 0:
                    run.dirty[self.position] = record
                    return RETRY_NOW
                self.wf._pause(record, AlarmReason.RETRY)
                return _SUSPEND
            run.events.add("retry.exhausted", self.position, name=self.name, attempts=self.attempt)
        record.state = StepState.FAILED
        record.finished_at = now
        run.dirty[self.position] = record
        raise error
