"""Starting instances: `start()` and `start_many()`.

A start inserts the instance already Queued, with its `workflow.queued` row, in one
transaction, and hands it to the dispatcher:

- inside that transaction when the dispatcher writes its task to the same database (django-q2's
  ORM broker on the default database: `transactional`), so that the instance and its task
  commit together or not at all, also inside a caller's `atomic()` that rolls back;
- once it commits otherwise (Redis, or the inline dispatcher). A task lost between the commit
  and the broker (the process died, the broker was down) leaves the instance Queued, and
  `recover()` sends it again once REDISPATCH_AFTER_SECONDS have passed.

`start_many()` does the same for many inputs, a batch at a time: one read for the ids that
exist already, one insert for the instances and one for their events.

A start with a delay (`delay=`, `start_at=`) inserts the instance the same way with its
start alarm instead of its task (delays.py); a debounced one first looks for the pending
instance of its key, under that key's lock (debounce.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.db import IntegrityError

from .. import database
from ..dispatch import get_dispatcher, on_commit
from ..exceptions import WorkflowIdConflict
from ..models import WorkflowInstance
from ..registry import WorkflowDefinition, get_definition
from ..start_options import StartOptions
from ..states import State
from . import clock, debounce
from . import store as stores
from .delays import schedule_txn
from .instances import WorkflowRef, existing
from .lifecycle import check_id, conceive, insert_txn, queued
from .locks import lock_txn
from .store import postgres

logger = logging.getLogger("durable_workflows")

BATCH = 500

Input = tuple[Sequence[Any], dict[str, Any], str | None]

NO_OPTIONS = StartOptions()


def start_one(workflow: WorkflowRef, args: Sequence[Any], kwargs: dict[str, Any],
              instance_id: str | None, options: StartOptions = NO_OPTIONS) -> tuple[WorkflowInstance, bool]:
    definition = get_definition(workflow)
    if options.debounce is not None:
        return _start_debounced(definition, args, kwargs, options)
    if stores.single_statements() and options.delay is None and options.start_at is None:
        started = _start_one_pg(definition, args, kwargs, instance_id, options)
        if started is not None:
            return started
    sends: list[Callable[[], None]] = []
    started = start_rows(definition, [(args, kwargs, instance_id)], sends, options)[0]
    for send in sends:
        on_commit(send)
    return started


def _start_debounced(definition: WorkflowDefinition, args: Sequence[Any], kwargs: dict[str, Any],
                     options: StartOptions) -> tuple[WorkflowInstance, bool]:
    """The pending instance of the key, its arguments replaced and its start pushed back;
    or a new one. Under the key's lock, so that two calls at once never make two."""
    assert options.debounce_key is not None  # for the type checker: parse() sets it with debounce
    definition.check_arguments(tuple(args), kwargs)
    sends: list[Callable[[], None]] = []
    with database.atomic():
        lock_txn("debounce", definition.name, options.debounce_key)
        pending = debounce.push_txn(definition, args, kwargs, options, clock.now())
        started = (pending, False) if pending is not None else start_rows(
            definition, [(args, kwargs, None)], sends, options)[0]
    for send in sends:
        on_commit(send)
    return started


def _start_one_pg(definition: WorkflowDefinition, args: Sequence[Any], kwargs: dict[str, Any],
                  instance_id: str | None, options: StartOptions) -> tuple[WorkflowInstance, bool] | None:
    """One statement: the instance unless its id is taken, its lifecycle row, and on the
    ORM broker its task. None when the id's row vanished between the statement and the
    read that followed it (the general path sorts that out)."""
    check_id(instance_id)
    try:
        instance = conceive(definition, args, kwargs, instance_id, now=clock.now(), state=State.QUEUED,
                            priority=options.priority)
    except (TypeError, ValueError):
        # A repeat is answered before its arguments are checked, as on every path.
        found = existing(instance_id, definition) if instance_id is not None else None
        if found is None:
            raise
        return found, False
    dispatcher = get_dispatcher()
    task = dispatcher.task_row(instance.pk, "fresh", instance.epoch)
    if not postgres.insert_started(instance, task):
        found = existing(instance_id, definition) if instance_id is not None else None
        return None if found is None else (found, False)
    instance._state.adding = False
    instance._state.db = database.alias()
    buffer = queued(instance)

    def after_commit() -> None:
        buffer.send()
        if task is None:
            dispatcher.dispatch(instance.pk, "fresh", instance.epoch)

    on_commit(after_commit)
    return instance, True


def start_many(workflow: WorkflowRef, inputs: Sequence[Any], instance_ids: Sequence[str] | None = None,
               options: StartOptions = NO_OPTIONS) -> list[tuple[WorkflowInstance, bool]]:
    definition = get_definition(workflow)
    if isinstance(inputs, (str, bytes, dict)) or not isinstance(inputs, Sequence):
        raise TypeError(f"inputs must be a list of inputs (each a list or a dict), got {type(inputs).__name__}")
    if instance_ids is not None:
        if isinstance(instance_ids, (str, bytes)) or not isinstance(instance_ids, Sequence):
            raise TypeError(f"instance_ids must be a list of ids, got {type(instance_ids).__name__}")
        if len(instance_ids) != len(inputs):
            raise ValueError(f"instance_ids has {len(instance_ids)} ids for {len(inputs)} inputs")
        seen: set[str] = set()
        instance_id: str | None
        for instance_id in instance_ids:
            if instance_id in seen:
                raise ValueError(f"instance id {instance_id!r} is given twice")
            seen.add(instance_id)
    rows: list[Input] = []
    args: Sequence[Any]
    kwargs: dict[str, Any]
    for index, given in enumerate(inputs):
        if isinstance(given, dict):
            args, kwargs = (), given
        elif isinstance(given, (list, tuple)):
            args, kwargs = tuple(given), {}
        else:
            raise TypeError(f"input {index} must be a list (positional arguments) or a dict (keyword "
                            f"arguments), got {type(given).__name__}")
        rows.append((args, kwargs, None if instance_ids is None else instance_ids[index]))
    started: list[tuple[WorkflowInstance, bool]] = []
    # Everything is checked before anything is written: a bad input in the last batch must
    # not leave the first ones started.
    for args, kwargs, instance_id in rows:
        check_id(instance_id)
        definition.check_arguments(tuple(args), kwargs)
    # One transaction for every batch: an input that cannot be stored, or an id that turns
    # out to be another workflow's, in a later batch leaves the earlier ones unwritten too.
    # What follows each batch's commit waits for that transaction's (and, in a test case,
    # runs as a start's would: on_commit sees only the test's own blocks open then).
    sends: list[Callable[[], None]] = []
    with database.atomic():
        for offset in range(0, len(rows), BATCH):
            started += start_rows(definition, rows[offset:offset + BATCH], sends, options)
    for send in sends:
        on_commit(send)
    return started


def start_rows(definition: WorkflowDefinition, rows: list[Input], sends: list[Callable[[], None]],
               options: StartOptions = NO_OPTIONS) -> list[tuple[WorkflowInstance, bool]]:
    """Start one batch; an id that exists returns that instance (created False). What is
    due once it commits is appended to `sends`, for the caller to register with on_commit
    once its transaction is done."""
    for attempt in range(2):
        try:
            return _start_rows(definition, rows, sends, options)
        except IntegrityError:
            # Another start inserted one of these ids since they were looked up: look again.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _start_rows(definition: WorkflowDefinition, rows: list[Input], sends: list[Callable[[], None]],
                options: StartOptions) -> list[tuple[WorkflowInstance, bool]]:
    ids = [instance_id for _, _, instance_id in rows if instance_id is not None]
    found = {}
    if ids:
        found = {i.pk: i for i in WorkflowInstance.objects.filter(pk__in=ids)}
        for instance in found.values():
            if instance.workflow != definition.name:
                raise WorkflowIdConflict(f"instance {instance.pk!r} already exists for workflow "
                                         f"{instance.workflow!r}, not {definition.name!r}")
    now = clock.now()
    start_at = options.start_time(now)
    results: list[tuple[WorkflowInstance, bool]] = []
    new: list[WorkflowInstance] = []
    for args, kwargs, instance_id in rows:
        if instance_id is not None and instance_id in found:
            results.append((found[instance_id], False))
            continue
        instance = conceive(definition, args, kwargs, instance_id, now=now, state=State.QUEUED,
                            priority=options.priority, start_at=start_at, debounce_key=options.debounce_key)
        new.append(instance)
        results.append((instance, True))
    if not new:
        return results
    dispatcher = get_dispatcher()
    transactional = dispatcher.transactional
    buffers = [queued(i) for i in new]
    # A delayed start gets its alarm instead of its task.
    sent = [] if start_at is not None else new
    try:
        with database.atomic():
            insert_txn(new, buffers)
            schedule_txn(new)
            if transactional:
                for instance in sent:
                    dispatcher.dispatch(instance.pk, "fresh", instance.epoch)
    except BaseException:
        for instance in new:
            instance._state.adding = True
        raise

    def after_commit() -> None:
        for buffer in buffers:
            buffer.send()
        if not transactional:
            for instance in sent:
                dispatcher.dispatch(instance.pk, "fresh", instance.epoch)

    sends.append(after_commit)
    return results
