"""One `wf.step(...)` call: its replay, its attempts, and their records."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from .. import serialization
from ..durations import parse_duration
from ..exceptions import ReplayError, SerializationError, StepScopeError, StepTimeout
from ..models import AlarmReason, StepKind, StepRecord, StepState
from ..retry import RetryPolicy
from . import atomic as atomic_steps
from . import clock, failures, limiters, observe
from .cursor import Cursor
from .faults import engine_io
from .lanes import branch_data
from .names import checked
from .outcome import RETRY, RUN, Outcome, returned
from .runs import error_fields
from .waits import Wait, is_due

if TYPE_CHECKING:
    from .context import WorkflowContext


def task_function(name: str, fn: Any) -> Any:
    """A task of Django's tasks framework (`@task`) runs as a step by its function. Its module
    is looked up, not imported: a project that has a task has imported it already."""
    for module in ("django.tasks", "django_tasks.base"):  # Django 6, the backport on 5.2
        task_class = getattr(sys.modules.get(module), "Task", None)
        if isinstance(task_class, type) and isinstance(fn, task_class):
            if getattr(fn, "takes_context", False):
                raise TypeError(f"step {name!r}: a task that takes a context cannot run as a step")
            return fn.func  # type: ignore[attr-defined]
    return fn


class StepCall:
    def __init__(
        self, wf: WorkflowContext, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
        kwargs: dict[str, Any], retry: RetryPolicy | None, timeout: Any, atomic: bool = False,
        limiter: str | None = None,
    ) -> None:
        checked(name, "a step name")
        if not callable(fn):
            fn = task_function(name, fn)  # a Task is not callable: its function is
        if not callable(fn):
            raise TypeError(f"step {name!r}: {fn!r} is not callable")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"step {name!r}: retry must be a RetryPolicy, got {retry!r}")
        if not isinstance(atomic, bool):
            raise TypeError(f"step {name!r}: atomic must be True or False, got {atomic!r}")
        if atomic:
            atomic_steps.check(name, fn, timeout)
        self.timeout = None if timeout is None else parse_duration(timeout, what=f"timeout of step {name!r}").total_seconds()
        #: The step limiter each attempt takes a unit of first (limiters.py), and its rate.
        self.limiter = limiter
        self.limiter_rate = None if limiter is None else limiters.rate_of(limiter, name)
        self.cursor = cursor = Cursor.enter(wf, "step")
        self.slot = slot = cursor.slot
        self.lane = lane = slot.lane
        self.position = slot.position
        #: The branch the step runs in ("" for the workflow function's own lane).
        self.branch = lane.branch
        #: What the lifecycle events of a step in a branch also carry.
        self.where = branch_data(lane.branch)
        self.wf = wf
        self.run = run = cursor.run
        self.checkpoint = checkpoint = run.checkpoint
        self.events = checkpoint.events
        self.name = name
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.retry = retry
        self.atomic = atomic
        # An attempt is stored before it runs when a restart must know of it: to count it
        # against more than one attempt, or to keep its deadline. A single attempt without
        # a timeout is simply run again after a crash, whether or not its start was stored.
        self.durable_attempts = (retry is not None and retry.max_attempts > 1) or self.timeout is not None
        self.record: StepRecord | None = None
        self.attempt = 0
        self.rerun = False
        self.remaining: float | None = None
        self.observed: observe.AttemptInfo | None = None

    def describe(self) -> str:
        return f"step {self.name!r} (attempt {self.attempt})"

    # -- replay -------------------------------------------------------------------------------
    def replay(self) -> Outcome:
        record = self.cursor.replay(self.name, StepKind.STEP)
        self.record = record
        if record is None:
            self.cursor.stage()
            return RUN
        if record.state == StepState.COMPLETED:
            self.lane.advance(record.finished_at)
            return returned(serialization.loads(record.result))
        deferred = record.get_deferred_fields()
        if deferred:  # an unfinished or failed step: its replay reads what load_records deferred
            with engine_io():
                self.checkpoint.store.load_deferred(record, sorted(deferred))
        if record.state == StepState.FAILED:
            error = failures.rebuild(record)
            if isinstance(error, ReplayError):
                self.cursor.fail_run(error)
            raise error
        self.cursor.stage(record)  # in flight, or waiting to retry
        self.attempt = record.attempts
        if record.state == StepState.RUNNING:
            # The attempt in flight when the last run stopped. Its deadline survives.
            if record.deadline_at is not None and record.deadline_at <= clock.now():
                self.failed(StepTimeout(f"{self.describe()} ran past its deadline while its worker was down"))
                return RUN
            self.rerun = True
            if record.deadline_at is not None:
                self.remaining = (record.deadline_at - clock.now()).total_seconds()
            return RUN
        if record.state == StepState.WAITING and not is_due(self.cursor, record):
            self.cursor.suspend(Wait(record, AlarmReason.RETRY))
        return RUN

    # -- attempts -----------------------------------------------------------------------------
    def start_attempt(self) -> float | None:
        """Count the attempt; store it first when it must survive a restart. Returns the
        seconds it may run."""
        self.run.lease.check()
        limiters.before_attempt(self)
        events = self.events
        # What the attempt adds to the buffers from here on is taken out again if its write
        # finds the instance held: then it never began (checkpoint.py).
        begins = len(events.pending)
        read = clock.now()  # one read of the clock for the attempt's start and its write
        now = events.stamp(read)
        if self.rerun:
            self.rerun = False
        else:
            self.attempt += 1
            self.remaining = self.timeout
        self.lane.attempt = self.attempt
        self.observed = observe.AttemptInfo(self.run.observed, self.wf.workflow, self.wf.instance_id, self.name,
                                            self.position, self.branch, self.attempt)
        observe.attempt_started(self.observed)
        record = self.record
        if record is not None and record.state == StepState.RUNNING and record.attempt_started_at is not None:
            # An attempt in flight when the last run stopped: its start was on the record
            # only, which this attempt's start overwrites.
            events.add("step.started", self.position, at=record.attempt_started_at, signalled=True,
                       name=self.name, attempt=record.attempts, **self.where)
        if record is None:
            record = StepRecord.new(
                instance_id=self.wf.instance_id, branch=self.branch, position=self.position, name=self.name,
                kind=StepKind.STEP, started_at=now,
            )
            self.record = record
            self.cursor.stage(record)
        record.state = StepState.RUNNING
        record.attempts = self.attempt
        record.attempt_started_at = now
        record.wake_at = None
        # An attempt that is stored first is signalled once that commits; any other is
        # signalled as it starts. Its log entry is read from the record (events.py).
        events.add("step.started", self.position, at=now, derived=True, name=self.name, attempt=self.attempt,
                   **self.where)
        if self.remaining is not None:
            record.deadline_at = now + timedelta(seconds=self.remaining)
            events.add("timeout.set", self.position, name=self.name, attempt=self.attempt,
                       deadline=record.deadline_at.isoformat(), **self.where)
        if self.durable_attempts:
            self.checkpoint.save(record, read, begins=begins)
            return self.remaining
        if self.checkpoint.children or self.checkpoint.deferred or self.checkpoint.meta is not None:
            # Children started before this step start before it runs, a step that finished
            # before it is on record before it runs, and progress set before it (set_meta)
            # can be read while it runs.
            self.checkpoint.save(now=read, begins=begins)
        events.announce()
        return self.remaining

    def succeeded(self, value: Any) -> Any:
        try:
            stored = serialization.dumps(value, f"the result of step {self.name!r}")
        except SerializationError as error:
            self.cursor.fail_run(error)
            raise
        record = self.record
        assert record is not None
        events = self.events
        now = events.stamp()
        record.state = StepState.COMPLETED
        record.result = stored
        record.finished_at = now
        record.deadline_at = None
        record.error_type = record.error_message = record.error_traceback = record.error_replay = ""
        events.add("step.completed", self.position, at=now, derived=True, name=self.name,
                   attempt=self.attempt, **self.where)
        observe.attempt_finished(self.observed)
        self.observed = None
        self.checkpoint.step_finished = True
        if self.atomic or self.cursor.concurrent or self.cursor.checking:
            self.checkpoint.save(record)
        else:
            # Written with the run's next write: before the next step runs, or with the
            # run's end, which then costs one commit instead of two.
            self.checkpoint.defer(record)
        self.lane.advance(now)
        # Hand back the stored form, so the first run sees exactly what every replay will.
        return serialization.stored_value(value, stored)

    def failed(self, error: BaseException) -> Outcome:
        """Record a failed attempt and decide: retry now, stop the run until a retry is due,
        or raise the error into the workflow. Writes nothing: what it decides goes out with
        the next write."""
        events = self.events
        record = self.record
        assert record is not None
        self._log_start(record)
        now = events.stamp()
        record.__dict__.update(error_fields(error))
        record.error_replay = failures.replay_info(error)
        record.deadline_at = None
        # The executor rides on the row the failure writes anyway: who ran each attempt
        # (django.tasks' worker_ids) costs no write of its own.
        events.add("step.failed", self.position, name=self.name, attempt=self.attempt,
                   error=f"{record.error_type}: {record.error_message}", worker=self.run.lease.owner,
                   **self.where)
        observe.attempt_finished(self.observed, error)
        self.observed = None
        if isinstance(error, StepTimeout):
            events.add("timeout.exceeded", self.position, name=self.name, attempt=self.attempt, **self.where)
        if isinstance(error, StepScopeError):
            self.cursor.fail_run(error)
        policy = self.retry
        if policy is not None and policy.should_retry(error) and not isinstance(error, StepScopeError):
            elapsed = (now - (record.started_at or now)).total_seconds()
            limit = policy.max_duration_seconds
            if self.attempt < policy.max_attempts and (limit is None or elapsed < limit):
                try:
                    delay = policy.delay(self.attempt)
                except ValueError as bad_policy:  # its backoff function raised or answered nonsense
                    return self._fail(bad_policy, now)
                events.add("retry.scheduled", self.position, name=self.name,
                           attempt=self.attempt + 1, delay=delay, **self.where)
                record.state = StepState.WAITING
                record.wake_at = now + timedelta(seconds=delay)
                self.cursor.keep(record)
                if delay <= 0:
                    return RETRY
                self.cursor.suspend(Wait(record, AlarmReason.RETRY))
            events.add("retry.exhausted", self.position, name=self.name, attempts=self.attempt, **self.where)
        return self._fail(error, now)

    def _log_start(self, record: StepRecord) -> None:
        """A failed attempt's start becomes a row: the next attempt, or the record's failure,
        leaves the record saying nothing of it. Its buffered event becomes that row where it
        waits still; one an earlier write took (a stored attempt) is added again, signalled."""
        for event in self.run.events.pending:
            if event.derived and event.kind == "step.started" and event.position == self.position \
                    and event.data.get("attempt") == self.attempt and event.data.get("branch") == self.where.get("branch"):
                event.derived = False
                return
        if record.attempt_started_at is not None:
            self.run.events.add("step.started", self.position, at=record.attempt_started_at, signalled=True,
                                name=self.name, attempt=self.attempt, **self.where)

    def _fail(self, error: BaseException, now: datetime) -> NoReturn:
        """The step has failed for good with `error`: record it and raise it into the workflow."""
        record = self.record
        assert record is not None
        record.__dict__.update(error_fields(error))
        record.error_replay = failures.replay_info(error)
        record.state = StepState.FAILED
        record.finished_at = now
        self.cursor.keep(record)
        raise error
