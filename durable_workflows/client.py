"""Starting, inspecting and cancelling instances: what application code calls."""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import serialization
from .dispatch import get_dispatcher, on_commit
from .engine import execute, fire_alarms, record_events
from .exceptions import (
    InvalidTransition,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowIdConflict,
    WorkflowNotFinished,
    WorkflowNotFound,
)
from .messaging import send_event
from .models import Alarm, StepRecord, WorkflowInstance
from .registry import WorkflowDefinition, get_definition
from .serialization import encode_input
from .states import TERMINAL, State, as_state, transition

WorkflowRef = str | Callable[..., Any] | WorkflowDefinition

__all__ = [
    "StepInfo", "WorkflowHandle", "cancel", "get", "list", "meta", "run_inline", "send_event",
    "start",
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

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    @classmethod
    def from_record(cls, record: StepRecord) -> StepInfo:
        return cls(
            position=record.position, name=record.name, kind=record.kind, state=record.state,
            result=serialization.loads(record.result), error=record.error,
            attempts=record.attempts, started_at=record.started_at,
            finished_at=record.finished_at, wake_at=record.wake_at,
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
    def is_finished(self) -> bool:
        return self.state in TERMINAL

    @property
    def steps(self) -> builtins.list[StepInfo]:
        if self._steps is None:
            records = StepRecord.objects.filter(instance_id=self.instance_id).order_by("position")
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
        worker to fire alarms, so waiting fires this instance's due alarms itself.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        synchronous = getattr(get_dispatcher(), "synchronous", False)
        while True:
            self.refresh()
            if self.is_finished:
                return self
            if deadline is not None and time.monotonic() >= deadline:
                return self
            if synchronous and self.state == State.PAUSED:
                fire_alarms(instance_id=self.instance_id)
                self.refresh()
                if self.is_finished:
                    return self
            time.sleep(poll)

    def cancel(self, reason: str = "") -> WorkflowHandle:
        cancel(self.instance_id, reason)
        return self.refresh()


def _load(instance_id: str) -> WorkflowInstance:
    if not isinstance(instance_id, str):
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    instance = WorkflowInstance.objects.filter(pk=instance_id).first()
    if instance is None:
        raise WorkflowNotFound(f"no workflow instance with id {instance_id!r}")
    return instance


def _check_id(instance_id: str | None) -> None:
    if instance_id is not None:
        if not isinstance(instance_id, str) or not instance_id.strip():
            raise ValueError(f"instance_id must be non-empty text, got {instance_id!r}")
        if len(instance_id) > 255:
            raise ValueError("instance_id must be at most 255 characters")


def _existing(instance_id: str, definition: WorkflowDefinition) -> WorkflowInstance | None:
    """The instance a repeated start with `instance_id` returns, if there is one; an id
    taken by another workflow is a conflict, never that other instance."""
    instance = WorkflowInstance.objects.filter(pk=instance_id).first()
    if instance is not None and instance.workflow != definition.name:
        raise WorkflowIdConflict(
            f"instance {instance_id!r} already exists for workflow {instance.workflow!r}, "
            f"not {definition.name!r}"
        )
    return instance


def _create(workflow: WorkflowRef, args: tuple[Any, ...], kwargs: dict[str, Any],
            instance_id: str | None) -> tuple[WorkflowInstance, bool]:
    """Insert the instance, or return the existing one with that id (idempotent start).

    A repeat is answered before the arguments are checked: it returns what the first start
    stored, whatever it was given this time."""
    definition = get_definition(workflow)
    _check_id(instance_id)
    if instance_id is not None:
        existing = _existing(instance_id, definition)
        if existing is not None:
            return existing, False
    definition.check_arguments(args, kwargs)
    stored = encode_input(args, kwargs)
    try:
        with transaction.atomic():
            instance = WorkflowInstance.objects.create(
                id=instance_id or uuid.uuid4().hex, workflow=definition.name, input=stored,
                state=State.PENDING,
            )
            if definition.timeout is not None:
                # Counted from the creation time the row got.
                instance.deadline_at = instance.created_at + timedelta(seconds=definition.timeout)
                instance.save(update_fields=["deadline_at"])
    except IntegrityError:
        existing = _existing(instance_id, definition) if instance_id is not None else None
        if existing is None:
            raise
        return existing, False
    return instance, True


def start(workflow: WorkflowRef, /, *args: Any, instance_id: str | None = None, **kwargs: Any) -> WorkflowHandle:
    """Create an instance and queue it to run once the current transaction commits.

    With `instance_id`, starting again returns the existing instance and never runs it twice
    (`handle.created` tells which); an id that another workflow's instance has is a
    `WorkflowIdConflict`. Nothing is stored when the workflow is unknown (`UnknownWorkflow`),
    the arguments do not fit its signature (`TypeError`) or cannot be stored
    (`SerializationError`).
    """
    instance, created = _create(workflow, args, kwargs, instance_id)
    handle = WorkflowHandle(instance, created=created)
    if not created:
        return handle
    on_commit(lambda: enqueue(instance))
    return handle.refresh() if getattr(get_dispatcher(), "synchronous", False) else handle


def enqueue(instance: WorkflowInstance | str) -> None:
    """Move a Pending instance to Queued and hand it to the dispatcher."""
    if isinstance(instance, str):
        found = WorkflowInstance.objects.filter(pk=instance).first()
        if found is None:
            return
        instance = found
    if instance.state != State.PENDING:
        return
    events = record_events(instance.pk, instance.workflow, ("workflow.queued", {}))
    try:
        with transaction.atomic():
            transition(instance, State.QUEUED, dispatched_at=timezone.now())
            events.write_txn()
    except InvalidTransition:
        return
    events.send()
    get_dispatcher().dispatch(instance.pk, "fresh", instance.epoch)


def run_inline(workflow: WorkflowRef, /, *args: Any, instance_id: str | None = None, **kwargs: Any) -> WorkflowHandle:
    """Run an instance in this process, to its first pause or its end, without a queue.

    With the id of an existing Paused instance whose alarm is due, resumes it instead.
    """
    instance, created = _create(workflow, args, kwargs, instance_id)
    if created:
        execute(instance.pk, "fresh", instance.epoch)
    elif instance.state == State.PAUSED:
        alarm = Alarm.objects.filter(instance_id=instance.pk, fire_at__lte=timezone.now()).first()
        if alarm is not None:
            execute(instance.pk, "resume", instance.epoch)
    return WorkflowHandle(instance, created=created).refresh()


def get(instance_id: str) -> WorkflowHandle:
    return WorkflowHandle(_load(instance_id))


def cancel(instance_id: str, reason: str = "") -> WorkflowHandle:
    """Cancel an instance: Queued or Paused at once, Running at its next step boundary.

    Raises `InvalidTransition` for an instance that already finished.
    """
    reason = "" if reason is None else str(reason)
    for _ in range(5):
        instance = _load(instance_id)
        state = as_state(instance.state)
        events = record_events(instance.pk, instance.workflow, ("workflow.cancelled", {"reason": reason}))
        if state in TERMINAL:
            raise InvalidTransition(
                f"cannot cancel instance {instance_id!r}: it is already {state.label}"
            )
        if state in (State.RUNNING, State.PENDING):
            updated = WorkflowInstance.objects.filter(pk=instance.pk, state=state).update(
                cancel_requested=True, cancel_reason=reason, updated_at=timezone.now()
            )
            if updated:
                return get(instance_id)
            continue
        try:
            with transaction.atomic():
                transition(instance, State.CANCELLED, cancel_requested=True, cancel_reason=reason)
                Alarm.objects.filter(instance_id=instance.pk).delete()
                events.write_txn()
        except InvalidTransition:
            events.discard()
            continue
        events.send()
        return get(instance_id)
    raise InvalidTransition(f"instance {instance_id!r} kept changing state; cancel it again")


def list(state: State | str | None = None, workflow: str | None = None, limit: int | None = None) -> builtins.list[WorkflowHandle]:  # noqa: A001
    """Instances, newest first, optionally of one state and one workflow."""
    queryset = WorkflowInstance.objects.order_by("-created_at", "-pk")
    if state is not None:
        queryset = queryset.filter(state=as_state(state))
    if workflow is not None:
        queryset = queryset.filter(workflow=get_definition(workflow).name if callable(workflow) else workflow)
    if limit is not None:
        queryset = queryset[:limit]
    return [WorkflowHandle(instance) for instance in queryset]


def meta(instance_id: str, key: str | None = None, default: Any = None) -> Any:
    """A value the workflow published with `wf.set_meta(key, value)` (or all of them)."""
    values = _load(instance_id).meta or {}
    if key is None:
        return dict(values)
    return values.get(key, default)
