"""A backend for Django's tasks framework (`django.tasks`, Django 6.0 and later, or the
django-tasks backport on Django 5.2) whose tasks are durable workflow instances.

    TASKS = {"default": {
        "BACKEND": "durable_workflows.tasks_backend.DurableTaskBackend",
        "OPTIONS": {"RETRY": {"max_attempts": 3, "initial_delay": "5s"}},
    }}

Each `enqueue` starts an instance of the built-in workflow "durable_workflows.task"
(`taskflow.py`), through the same start path as `start()`: on django-q2's ORM broker its
task commits with the caller's transaction, elsewhere it is sent once that commits. The
result id is the instance id, so a task shows in the admin and the API like any instance.

How an instance's state reads as Django's `TaskResultStatus`:

=================================  ==============
Pending, Queued, Paused            READY (waiting to run, for `run_after` or a retry)
Running                            RUNNING
Completed                          SUCCESSFUL
Failed, Cancelled                  FAILED
=================================  ==============
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar, cast

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

try:
    from .tasks_framework import (
        BaseTaskBackend,
        InvalidTask,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultDoesNotExist,
        TaskResultStatus,
        normalize_json,
        task_backends,
        task_enqueued,
        task_finished,
        task_started,
    )
except ImportError as missing:  # Django 5.2 without the backport
    raise ImproperlyConfigured(
        "durable_workflows.tasks_backend needs Django's tasks framework: Django 6.0 or later, or on "
        "Django 5.2 the django-tasks backport (pip install 'django-durable-workflows[tasks]')"
    ) from missing

from . import client, serialization
from .durations import to_seconds
from .exceptions import NonRetryableError
from .models import Event, StepKind, StepRecord, StepState, WorkflowInstance
from .retry import RetryPolicy
from .states import State, as_state
from .taskflow import KNOWN, TASK_WORKFLOW, remember

__all__ = ["DurableTaskBackend"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

STATUS = {
    State.PENDING: TaskResultStatus.READY,
    State.QUEUED: TaskResultStatus.READY,
    State.PAUSED: TaskResultStatus.READY,
    State.RUNNING: TaskResultStatus.RUNNING,
    State.COMPLETED: TaskResultStatus.SUCCESSFUL,
    State.FAILED: TaskResultStatus.FAILED,
    State.CANCELLED: TaskResultStatus.FAILED,
}

#: The worker id of an attempt whose executor is no longer on record (see `worker_ids`).
UNRECORDED = "unrecorded"


@dataclass(frozen=True, slots=True, kw_only=True)
class DurableTask(Task):
    """A task of a DurableTaskBackend, which takes two more keywords where Django passes
    them on (6.1 and later): `@task(retry=RetryPolicy(...) or {...}, timeout="30s")`, the
    retry policy and the time limit of each attempt, over the backend's `OPTIONS["RETRY"]`."""

    retry: RetryPolicy | dict[str, Any] | None = None
    timeout: timedelta | int | float | str | None = None


class DurableTaskBackend(BaseTaskBackend):
    """Runs each task as a one-step durable workflow on the django-q2 workers.

    `OPTIONS["RETRY"]` is a dict of `RetryPolicy` arguments (`{"max_attempts": 3}`); without
    it a task runs once, as on Django's own backends."""

    task_class = DurableTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.retry = _policy(alias, self.options.get("RETRY"))

    def validate_task(self, task: Task[..., Any]) -> None:
        super().validate_task(task)
        if len(task.module_path) > 255:
            raise InvalidTask(f"the task's path is over 255 characters: {task.module_path[:80]}...")
        retry, timeout = getattr(task, "retry", None), getattr(task, "timeout", None)
        if isinstance(retry, dict):
            try:
                object.__setattr__(task, "retry", RetryPolicy(**retry))
            except (TypeError, ValueError) as error:
                raise InvalidTask(f"task {task.module_path}: retry: {error}") from None
        elif retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidTask(f"task {task.module_path}: retry must be a RetryPolicy or a dict of its "
                              f"arguments, got {retry!r}")
        if timeout is not None:
            try:
                to_seconds(timeout, what="timeout")
            except ValueError as error:
                raise InvalidTask(f"task {task.module_path}: {error}") from None

    def enqueue(self, task: Task[_P, _R], args: list[Any], kwargs: dict[str, Any]) -> TaskResult[_P, _R]:
        self.validate_task(task)
        # Django's own error (TypeError or ValueError) for arguments that are not JSON, before
        # anything is written.
        stored_args, stored_kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        run_after = None if task.run_after is None else task.run_after.isoformat()
        instance_id = uuid.uuid4().hex
        remember(instance_id, task, self.alias)
        handle = client.start(TASK_WORKFLOW, task.module_path, stored_args, stored_kwargs, self.alias,
                              task.priority, task.queue_name, run_after, instance_id=instance_id,
                              priority=task.priority)
        known = KNOWN.get(instance_id)
        if known is not None and known[2] == TaskResultStatus.READY:
            # Not run in this thread (or not yet): what was just stored is the whole result.
            instance = handle.instance
            return TaskResult(task=task, id=instance.pk, status=TaskResultStatus.READY,
                              enqueued_at=instance.created_at, started_at=None, last_attempted_at=None,
                              finished_at=None, args=cast(list[Any], stored_args),
                              kwargs=cast(dict[str, Any], stored_kwargs), backend=self.alias, errors=[],
                              worker_ids=[])
        return self.get_result(instance_id)  # type: ignore[return-value]

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        instance = None
        if isinstance(result_id, str):
            instance = WorkflowInstance.objects.filter(pk=result_id, workflow=TASK_WORKFLOW).first()
        if instance is None:
            raise TaskResultDoesNotExist(result_id)
        return self._result(instance)

    def _result(self, instance: WorkflowInstance, task: Task[..., Any] | None = None) -> TaskResult[..., Any]:
        (path, args, kwargs, alias, priority, queue_name, run_after), _ = serialization.decode_input(instance.input)
        if task is None:
            when = None if run_after is None else datetime.fromisoformat(run_after)
            task = task_for(path, priority, queue_name, alias, when)
        record = StepRecord.objects.filter(instance_id=instance.pk, kind=StepKind.STEP).first()
        state = as_state(instance.state)
        attempts, started_at, last_attempted_at = 0, None, None
        if record is not None:
            attempts, started_at, last_attempted_at = record.attempts, record.started_at, record.attempt_started_at
        elif state == State.RUNNING:
            # A single attempt is not stored before it runs (a crash simply runs it again):
            # it began with the run that holds the instance.
            attempts, started_at = 1, instance.updated_at
            last_attempted_at = started_at
        logged = list(Event.objects.filter(instance_id=instance.pk, kind__in=("step.failed", "workflow.completed"))
                      .order_by("id").values_list("kind", "data")) if attempts else []
        result: TaskResult[..., Any] = TaskResult(
            task=task, id=instance.pk, status=STATUS[state], enqueued_at=instance.created_at,
            started_at=started_at, last_attempted_at=last_attempted_at,
            finished_at=instance.finished_at, args=args, kwargs=kwargs, backend=alias,
            errors=_errors(instance, record, [d for kind, d in logged if kind == "step.failed"]),
            worker_ids=_worker_ids(instance, attempts, logged),
        )
        if state == State.COMPLETED:
            object.__setattr__(result, "_return_value", serialization.loads(instance.result))
        return result


def _policy(alias: str, given: Any) -> RetryPolicy:
    where = f"TASKS[{alias!r}]['OPTIONS']['RETRY']"
    if given is None:
        return RetryPolicy(max_attempts=1)
    if not isinstance(given, dict):
        raise ImproperlyConfigured(f"{where} must be a dict of RetryPolicy arguments, got {given!r}")
    try:
        return RetryPolicy(**given)
    except (TypeError, ValueError) as error:
        raise ImproperlyConfigured(f"{where}: {error}") from None


def retry_policy(alias: str, task: Task[..., Any] | None = None) -> RetryPolicy:
    """The retry policy of `task`, or else of the task backend `alias` (its OPTIONS["RETRY"])."""
    own = getattr(task, "retry", None)
    if isinstance(own, RetryPolicy):
        return own
    backend = task_backends[alias]
    if not isinstance(backend, DurableTaskBackend):
        raise ImproperlyConfigured(f"TASKS[{alias!r}] is not a DurableTaskBackend")
    return backend.retry


def _task(path: str) -> Task[..., Any]:
    try:
        found = import_string(path)
    except ImportError as error:
        raise NonRetryableError(f"task {path!r} cannot be imported: {error}") from None
    if not isinstance(found, Task):
        raise NonRetryableError(f"{path!r} is not a task (decorate it with django.tasks.task)")
    return found


def task_for(path: str, priority: int, queue_name: str, alias: str, run_after: datetime | None) -> Task[..., Any]:
    """The Task an instance runs, as it was enqueued."""
    try:
        found = _task(path)
    except NonRetryableError:  # the instance fails on it: its result says so
        return _stand_in(path, priority, queue_name, alias, run_after)
    return found.using(priority=priority, queue_name=queue_name, backend=alias, run_after=run_after)


def _stand_in(path: str, priority: int, queue_name: str, alias: str, run_after: datetime | None) -> Task[..., Any]:
    """A Task for the path of one that does not import (or is not a task), so that the
    result of its instance can still be read: calling it raises the error the step did."""
    def unimportable(*args: Any, **kwargs: Any) -> Any:
        _task(path)

    module, _, name = path.rpartition(".")
    unimportable.__module__, unimportable.__name__, unimportable.__qualname__ = module, name, name
    return Task(func=unimportable, priority=priority, backend=alias, queue_name=queue_name, run_after=run_after)


def call_task(path: str, args: list[Any], kwargs: dict[str, Any], alias: str, instance_id: str) -> Any:
    """The step of a task's instance: run the task's function, sync or async."""
    task = _task(path)
    if task.takes_context:
        context = TaskContext(task_result=task_backends[alias].get_result(instance_id))
        value = task.call(context, *args, **kwargs)
    else:
        value = task.call(*args, **kwargs)
    return normalize_json(value)


def _errors(instance: WorkflowInstance, record: StepRecord | None, logged: list[dict[str, Any]]) -> list[TaskError]:
    """One error per failed attempt, oldest first. The last one has its traceback (the step's
    record keeps it); the earlier ones, from the event log, their type and message."""
    if record is None:
        if instance.error_type:
            return [TaskError(exception_class_path=_path(instance.error_type, instance.error_traceback),
                              traceback=instance.error_traceback)]
        return []
    failed = record.attempts - (1 if record.state in (StepState.RUNNING, StepState.COMPLETED) else 0)
    if failed <= 0:
        return []
    last_path = _path(record.error_type, record.error_traceback) if record.error_type else None
    errors = []
    for attempt in range(1, failed + 1):
        text = next((str(d.get("error", "")) for d in logged if d.get("attempt") == attempt), "")
        if attempt == failed and last_path is not None and record.state != StepState.COMPLETED:
            errors.append(TaskError(exception_class_path=last_path, traceback=record.error_traceback))
            continue
        name = text.partition(":")[0].strip()
        path = last_path if last_path and last_path.rpartition(".")[2] == name else _path(name, "")
        errors.append(TaskError(exception_class_path=path,
                                traceback=f"{text or 'an error'} (attempt {attempt}; its traceback is not kept)"))
    return errors


def _path(name: str, trace: str) -> str:
    """The exception's dotted path: the traceback's last line names it so (`module.Class:
    message`), but for a builtin."""
    lines = [line for line in trace.strip().splitlines() if line and not line.startswith(" ")]
    if lines:
        head = lines[-1].partition(":")[0].strip()
        if head.rpartition(".")[2] == name and " " not in head:
            return head if "." in head else f"builtins.{head}"
    return f"builtins.{name}" if isinstance(getattr(builtins, name, None), type) else name


def _worker_ids(instance: WorkflowInstance, attempts: int, logged: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One id per attempt (Django counts attempts by them): the executor that ran it. A failed
    attempt's `step.failed` event names it, the run that completed the task its
    `workflow.completed`, and a running attempt's is the one holding the instance's lease.
    Events written before executors were logged name none: "unrecorded"."""
    ids = [UNRECORDED] * attempts
    for kind, data in logged:
        attempt = data.get("attempt") if kind == "step.failed" else attempts
        worker = data.get("worker")
        if isinstance(attempt, int) and 1 <= attempt <= attempts and isinstance(worker, str) and worker:
            ids[attempt - 1] = worker
    owner = instance.lease_owner if as_state(instance.state) == State.RUNNING else ""
    if ids and owner:
        ids[-1] = owner
    return ids


_TASK_SIGNALS = {"task_enqueued": task_enqueued, "task_started": task_started, "task_finished": task_finished}


def send(signal_name: str, instance_id: str, status: str) -> None:
    """Send Django's task signal `signal_name` for the task instance `instance_id`, which has
    just reached `status`."""
    known = KNOWN.get(instance_id)
    if known is None:
        instance = WorkflowInstance.objects.filter(pk=instance_id).only("input").first()
        if instance is None:
            return
        (path, _, _, alias, priority, queue_name, run_after), _ = serialization.decode_input(instance.input)
        when = None if run_after is None else datetime.fromisoformat(run_after)
        remember(instance_id, task_for(path, priority, queue_name, alias, when), alias)
        known = KNOWN[instance_id]
    task, alias, _ = known
    known[2] = status
    if signal_name == "task_finished":
        KNOWN.pop(instance_id, None)
    backend = task_backends[alias]
    _TASK_SIGNALS[signal_name].send(sender=type(backend), task_result=_LazyResult.of(task, instance_id, alias, status))


class _LazyResult(TaskResult):
    """The TaskResult a signal carries: its task, id, backend and status are known when the
    signal is sent; the rest is read from the instance once a receiver asks for it. Django's
    own receivers log only those four, so a task's three signals cost no query."""

    __slots__ = ()

    @classmethod
    def of(cls, task: Task[..., Any], instance_id: str, alias: str, status: str) -> TaskResult[..., Any]:
        result = object.__new__(cls)
        for name, value in (("task", task), ("id", instance_id), ("backend", alias),
                            ("status", TaskResultStatus(status))):
            object.__setattr__(result, name, value)
        return result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        full = task_backends[self.backend].get_result(self.id)
        for field in fields(TaskResult):
            try:
                object.__getattribute__(self, field.name)
            except AttributeError:
                object.__setattr__(self, field.name, getattr(full, field.name))
        return object.__getattribute__(self, name)
