"""Starting, inspecting and cancelling instances: what application code calls."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import bulk as bulk_actions
from . import filters as instance_filters
from . import serialization
from .dispatch import get_dispatcher
from .engine import (
    clock,
    execute,
    fire_alarms,
    fire_schedules,
    holds,
    purge_expired,
    recover,
    starts,
)
from .engine.check import check_replay
from .engine.forks import fork as fork_instance
from .engine.instances import WorkflowRef, cancel_instance, create, findable
from .exceptions import (
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFinished,
    WorkflowNotFound,
)
from .messaging import send_event
from .models import Alarm, StepRecord, WorkflowInstance
from .start_options import Duration, StartOptions
from .states import TERMINAL, State, as_state

__all__ = [
    "StepInfo", "WorkflowHandle", "bulk", "cancel", "check_replay", "fire_alarms", "fire_schedules", "fork", "get", "list",
    "meta", "pause", "purge_expired", "recover", "resume", "run_inline", "send_event", "start", "start_many",
]


@dataclass(frozen=True)
class StepInfo:
    """One recorded step or sleep, readable as attributes or as `info["name"]`."""

    position: int
    name: str
    kind: str
    state: str
    result: Any
    error: dict[str, str] | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    wake_at: datetime | None
    #: The parallel branch it ran in ("3:1": branch 1 of the wf.parallel at position 3), or "".
    branch: str = ""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    @classmethod
    def from_record(cls, record: StepRecord) -> StepInfo:
        return cls(
            position=record.position, name=record.name, kind=record.kind, state=record.state,
            result=serialization.loads(record.result), error=record.error,
            attempts=record.attempts, started_at=record.started_at,
            finished_at=record.finished_at, wake_at=record.wake_at, branch=record.branch,
        )


class WorkflowHandle:
    """A view of one instance. It reads the database when made and on `refresh()`."""

    def __init__(self, instance: WorkflowInstance, *, created: bool = False) -> None:
        self._instance = instance
        self._steps: builtins.list[StepInfo] | None = None
        #: True on the handle `start()` returns when that call created the instance.
        self.created = created

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow} {self.instance_id} {self.state.label}>"

    @property
    def instance_id(self) -> str:
        return self._instance.pk

    id = instance_id

    @property
    def workflow(self) -> str:
        return self._instance.workflow

    @property
    def state(self) -> State:
        return as_state(self._instance.state)

    @property
    def instance(self) -> WorkflowInstance:
        return self._instance

    @property
    def error(self) -> dict[str, str] | None:
        return self._instance.error

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self._instance.meta or {})

    @property
    def parent_id(self) -> str | None:
        """The instance that started this one with `wf.start_child`, if any."""
        return self._instance.parent_id

    @property
    def forked_from(self) -> str | None:
        """The instance this one was forked from with `client.fork`, if any."""
        return self._instance.forked_from

    @property
    def generation(self) -> int:
        """How many times the instance continued as new (`wf.continue_as_new`): 0 until it
        first does. `steps` are those of the current generation."""
        return self._instance.generation

    @property
    def children(self) -> builtins.list[str]:
        """The ids of the instances this one started with `wf.start_child`, in start order."""
        return self._instance.child_ids()

    @property
    def priority(self) -> int:
        """-100 to 100: where instances wait for a slot, the higher start first."""
        return self._instance.priority

    @property
    def start_at(self) -> datetime | None:
        """When a delayed or debounced start is scheduled to start (None: at once)."""
        return self._instance.start_at

    @property
    def held(self) -> bool:
        """Whether an operator holds it (`pause`): nothing starts or resumes it until `resume`."""
        return self._instance.held

    @property
    def held_reason(self) -> str:
        return self._instance.held_reason

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL

    @property
    def steps(self) -> builtins.list[StepInfo]:
        if self._steps is None:
            records = sorted(StepRecord.objects.filter(instance_id=self.instance_id), key=lambda r: r.sort_key)
            self._steps = [StepInfo.from_record(r) for r in records]
        return self._steps

    @property
    def alarm(self) -> Alarm | None:
        return Alarm.objects.filter(instance_id=self.instance_id).first()

    def refresh(self) -> WorkflowHandle:
        self._instance = _load(self.instance_id)
        self._steps = None
        return self

    def result(self, timeout: float | None = None) -> Any:
        """The return value. Raises `WorkflowFailed` or `WorkflowCancelled` for an instance that
        ended otherwise, and `WorkflowNotFinished` for one still under way; with `timeout`,
        first waits that long for it to finish."""
        if timeout is not None:
            self.wait(timeout)
        state = self.state
        if state == State.COMPLETED:
            return serialization.loads(self._instance.result)
        if state == State.FAILED:
            error = self.error or {}
            raise WorkflowFailed(
                f"workflow instance {self.instance_id!r} failed: "
                f"{error.get('type', 'Error')}: {error.get('message', '')}"
            )
        if state == State.CANCELLED:
            reason = self._instance.cancel_reason
            raise WorkflowCancelled(
                f"workflow instance {self.instance_id!r} was cancelled"
                + (f": {reason}" if reason else "")
            )
        raise WorkflowNotFinished(
            f"workflow instance {self.instance_id!r} has not finished (it is {state.label}); "
            f"call wait() or result(timeout=...)"
        )

    def wait(self, timeout: float | None = None, poll: float = 0.05) -> WorkflowHandle:
        """Block until the instance finishes or `timeout` seconds pass; returns the handle.

        With a synchronous dispatcher (django-q2 `sync=True`, InlineDispatcher) there is no
        worker to fire alarms, so waiting fires this instance's due alarms itself (a sleep's,
        or a delayed start's).
        """
        timeout = _seconds(timeout, "timeout", allow_none=True)
        poll = _seconds(poll, "poll")
        deadline = None if timeout is None else time.monotonic() + timeout
        synchronous = get_dispatcher().synchronous
        while True:
            self.refresh()
            if self.is_finished:
                return self
            if deadline is not None and time.monotonic() >= deadline:
                return self
            if synchronous and (self.state == State.PAUSED or self._instance.start_at is not None):
                fire_alarms(instance_id=self.instance_id)
                self.refresh()
                if self.is_finished:
                    return self
            time.sleep(poll)

    def cancel(self, reason: str = "") -> WorkflowHandle:
        cancel(self.instance_id, reason)
        return self.refresh()

    def pause(self, reason: str = "") -> WorkflowHandle:
        pause(self.instance_id, reason)
        return self.refresh()

    def resume(self) -> WorkflowHandle:
        resume(self.instance_id)
        return self.refresh()


def _seconds(value: Any, what: str, *, allow_none: bool = False) -> Any:
    """A number of seconds a caller gave: finite and not negative."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"{what} must be a number of seconds, 0 or more, got {value!r}")
    return value


def _load(instance_id: str) -> WorkflowInstance:
    if not findable(instance_id):
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    instance = WorkflowInstance.objects.filter(pk=instance_id).first()
    if instance is None:
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    return instance


def start(workflow: WorkflowRef, /, *args: Any, instance_id: str | None = None, priority: int | None = None,
          delay: Duration | None = None, start_at: datetime | None = None, debounce: Duration | None = None,
          debounce_key: Any = None, debounce_max: Duration | None = None, **kwargs: Any) -> WorkflowHandle:
    """Create an instance and queue it to run once the current transaction commits.

    With `instance_id`, starting again returns the existing instance and never runs it twice
    (`handle.created` tells which); an id that another workflow's instance has is a
    `WorkflowIdConflict`. Nothing is stored when the workflow is unknown (`UnknownWorkflow`),
    the arguments do not fit its signature (`TypeError`) or cannot be stored
    (`SerializationError`), or an option is wrong (`ValueError`).

    `priority` (-100..100, larger first; the workflow's own by default) orders the instances
    that wait for a slot. `delay` (a duration) or `start_at` (an aware datetime) keeps the
    instance Queued until then. `debounce` (a duration) with `debounce_key` (any JSON value)
    collapses the calls that come within it into one start with the last call's arguments,
    at most `debounce_max` after the first. These names are `start`'s own: a workflow
    parameter with one of them is passed with `start_with()`.
    """
    return start_with(workflow, args, kwargs, instance_id, priority=priority, delay=delay, start_at=start_at,
                      debounce=debounce, debounce_key=debounce_key, debounce_max=debounce_max)


def start_with(workflow: WorkflowRef, args: Sequence[Any], kwargs: dict[str, Any],
               instance_id: str | None = None, *, priority: int | None = None, delay: Duration | None = None,
               start_at: datetime | None = None, debounce: Duration | None = None, debounce_key: Any = None,
               debounce_max: Duration | None = None) -> WorkflowHandle:
    """`start()` with the arguments as a list and a dict: how the API and the command pass
    them, so that a workflow argument named `instance_id`, `priority`, `delay`, `start_at`,
    `debounce`, `debounce_key` or `debounce_max` stays the workflow's."""
    options = StartOptions.parse(priority=priority, delay=delay, start_at=start_at, debounce=debounce,
                                 debounce_key=debounce_key, debounce_max=debounce_max, instance_id=instance_id)
    instance, created = starts.start_one(workflow, tuple(args), kwargs, instance_id, options)
    handle = WorkflowHandle(instance, created=created)
    if not created:
        return handle
    return handle.refresh() if get_dispatcher().synchronous else handle


def start_many(workflow: WorkflowRef, inputs: builtins.list[Any], instance_ids: builtins.list[str] | None = None,
               *, priority: int | None = None, delay: Duration | None = None, start_at: datetime | None = None,
               ) -> builtins.list[WorkflowHandle]:
    """Start many instances of `workflow`, a batch of 500 at a time (one read, one insert of
    the instances and one of their events per batch). Each input is a list (positional
    arguments) or a dict (keyword arguments). With `instance_ids` it is idempotent per id:
    an id that exists returns that instance (`handle.created` False).

    The batches commit together, in one transaction: arguments that do not fit (`TypeError`),
    ids and inputs of different lengths or a repeated id (`ValueError`), an input that cannot
    be stored (`SerializationError`) or an id another workflow's instance has
    (`WorkflowIdConflict`), wherever it is in `inputs`, create nothing. `priority`, `delay`
    and `start_at` are `start()`'s, for every instance."""
    options = StartOptions.parse(priority=priority, delay=delay, start_at=start_at)
    synchronous = get_dispatcher().synchronous
    handles = [WorkflowHandle(instance, created=created)
               for instance, created in starts.start_many(workflow, inputs, instance_ids, options)]
    return [handle.refresh() for handle in handles] if synchronous else handles


def run_inline(workflow: WorkflowRef, /, *args: Any, instance_id: str | None = None, **kwargs: Any) -> WorkflowHandle:
    """Run an instance in this process, to its first pause or its end, without a queue.

    With the id of an existing Paused instance whose alarm is due, resumes it instead.
    """
    instance, created = create(workflow, args, kwargs, instance_id)
    if created:
        execute(instance.pk, "fresh", instance.epoch)
    elif instance.state == State.PAUSED:
        alarm = Alarm.objects.filter(instance_id=instance.pk, fire_at__lte=clock.now()).first()
        if alarm is not None:
            execute(instance.pk, "resume", instance.epoch)
    return WorkflowHandle(instance, created=created).refresh()


def get(instance_id: str) -> WorkflowHandle:
    """The handle of an existing instance; `WorkflowNotFound` for an unknown id."""
    return WorkflowHandle(_load(instance_id))


def cancel(instance_id: str, reason: str = "") -> WorkflowHandle:
    """Cancel an instance: Queued or Paused at once, Running at its next step boundary; its
    unfinished children (and theirs) with it.

    Raises `InvalidTransition` for an instance that already finished.
    """
    if not findable(instance_id):
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"a cancel reason must be text, got {reason!r}")
    cancel_instance(instance_id, reason or "")
    return get(instance_id)


def pause(instance_id: str, reason: str = "") -> WorkflowHandle:
    """Hold an instance until `resume`: a Queued one is not started, a Paused one is not
    resumed (whatever comes due: an alarm, an event, a child's end), and a Running one
    finishes the step it runs and stops, Paused, before its next step. The state it is in
    does not change for the hold (`handle.held` says it). Pausing a held instance again
    replaces the reason; a cancel ends the hold.

    Raises `InvalidTransition` for an instance that already finished."""
    _check_findable(instance_id)
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"a pause reason must be text, got {reason!r}")
    holds.hold(instance_id, reason or "")
    return get(instance_id)


def resume(instance_id: str) -> WorkflowHandle:
    """End the hold `pause` put on an instance, and run it at once if something became due
    meanwhile (an alarm, an event, a child's end, a start). An instance that is not held is
    left as it is."""
    _check_findable(instance_id)
    holds.release(instance_id)
    return get(instance_id)


def _check_findable(instance_id: object) -> None:
    if not findable(instance_id):
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")


def fork(instance_id: str, *, from_position: int | None = None, new_id: str | None = None) -> WorkflowHandle:
    """A new instance of the same workflow and input that replays the original's records
    before `from_position` of its workflow function (by default, up to its first failed or
    unfinished one) and runs the rest under the code installed now: how a Failed instance is
    repaired once the fix is deployed. It is queued once the current transaction commits; the
    original stays as it is.

    Unknown id: `WorkflowNotFound`. An instance that has not finished: `InvalidTransition`
    (cancel it first; two live instances would run the same steps). A `from_position` below 0 or past the recorded history:
    `ValueError`. A `new_id` that exists: `WorkflowIdConflict`. Nothing is created then.
    """
    if not findable(instance_id):
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    handle = WorkflowHandle(fork_instance(instance_id, from_position=from_position, new_id=new_id), created=True)
    return handle.refresh() if get_dispatcher().synchronous else handle


def list(state: State | str | Iterable[State | str] | None = None, workflow: WorkflowRef | None = None,  # noqa: A001
         limit: int | None = None, **filters: Any) -> builtins.list[WorkflowHandle]:
    """Instances, newest first, that match every filter given: `state` (one, or a list),
    `workflow`, `parent`, `forked_from`, `id_prefix`, `created_after`, `created_before`,
    `finished_after`, `finished_before` (aware datetimes; "after" and "before" are strict).

    An unknown filter or state, a naive datetime or empty text: `ValueError` naming it."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a whole number, 0 or more, got {limit!r}")
    queryset = instance_filters.filtered(WorkflowInstance.objects.order_by("-created_at", "-pk"),
                                         {"state": state, "workflow": workflow, **filters})
    if limit is not None:
        queryset = queryset[:limit]
    return [WorkflowHandle(instance) for instance in queryset]


def bulk(action: str, /, *, reason: str = "", **filters: Any) -> int:
    """Do `action` ("cancel", "fork", "pause" or "resume") to every instance the filters
    select (the filters of `list`, at least one), a chunk at a time, each chunk in its own
    transaction; returns how many instances took it (for "fork": how many forks were made).
    Instances that cannot take it (a finished one for "cancel" or "pause", an unfinished one
    for "fork", one not held for "resume") are skipped.

    `reason` is kept on cancelled and held instances. An unknown action or filter, a bad value or no
    filter at all: `ValueError`, and nothing changes."""
    return bulk_actions.run(action, filters, reason)


def meta(instance_id: str, key: str | None = None, default: Any = None) -> Any:
    """A value the workflow published with `wf.set_meta(key, value)` (or all of them)."""
    if key is not None and not isinstance(key, str):
        raise TypeError(f"a meta key is text, got {key!r}")
    values = _load(instance_id).meta or {}
    if key is None:
        return dict(values)
    return values.get(key, default)
