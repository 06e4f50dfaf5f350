"""`execute(instance_id, mode)`: claim an instance, run its function, record the outcome."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync

from .. import serialization
from ..conf import settings
from ..exceptions import LeaseLost, SerializationError, Suspend, UnknownWorkflow
from ..registry import WorkflowDefinition, get_definition
from ..states import State
from . import heartbeat
from .context import AsyncWorkflowContext, WorkflowContext
from .store import Run, cancel_running, claim, decode_input, error_fields, load_records

logger = logging.getLogger("durable_workflows")

_SUSPENDED = object()


def execute(instance_id: str, mode: str = "fresh", epoch: int | None = None) -> str | None:
    """Run one instance until it finishes or pauses. Returns the state it was left in, or
    None when there was nothing to claim (another worker has it, or it already moved on)."""
    run = claim(instance_id, mode, epoch)
    if run is None:
        return None
    instance = run.instance
    if instance.cancel_requested:
        cancel_running(instance, run.epoch, run.events)
        return State.CANCELLED
    if mode == "recover" and instance.recovery_count > settings.MAX_RECOVERY_ATTEMPTS:
        attempts = instance.recovery_count - 1
        error = RuntimeError(f"failed after {attempts} recovery attempts")
        return _fail(run, error, "RecoveryLimitExceeded")
    try:
        definition = get_definition(instance.workflow)
    except UnknownWorkflow as error:
        return _fail(run, error)
    beat = heartbeat.register(run.instance_id, run.epoch)
    run.beat = beat
    try:
        return _run(run, definition)
    finally:
        heartbeat.unregister(beat)


def _run(run: Run, definition: WorkflowDefinition) -> str | None:
    # An instance's first run has no records yet: skip the query.
    first_run = run.mode == "fresh" and run.instance.run_count == 1
    records = {} if first_run else load_records(run.instance_id)
    context_class = AsyncWorkflowContext if definition.is_async else WorkflowContext
    wf = context_class(run, records, definition.name)
    try:
        args, kwargs = decode_input(run.instance)
        if definition.is_async:
            result = async_to_sync(_run_async)(definition, wf, args, kwargs)
        else:
            result = definition.fn(wf, *args, **kwargs)
        if wf._fatal is not None:
            raise wf._fatal
        if result is _SUSPENDED:
            return State.PAUSED
        try:
            stored = serialization.dumps(result, f"the result of workflow {definition.name!r}")
        except SerializationError as error:
            return _fail(run, error)
        run.events.add("workflow.completed", None)
        run.finish(State.COMPLETED, result=stored)
        return State.COMPLETED
    except Suspend:
        return State.PAUSED
    except LeaseLost:
        run.settle_lost_lease()
        return None
    except Exception as error:
        return _fail(run, wf._fatal or error)


async def _run_async(
    definition: WorkflowDefinition, wf: WorkflowContext, args: list[Any], kwargs: dict[str, Any]
) -> Any:
    try:
        return await definition.fn(wf, *args, **kwargs)
    except Suspend:
        return _SUSPENDED


def _fail(run: Run, error: BaseException, error_type: str | None = None) -> str | None:
    fields = error_fields(error)
    if error_type:
        fields["error_type"] = error_type
    run.events.add("workflow.failed", None, error=f"{fields['error_type']}: {fields['error_message']}")
    try:
        run.finish(State.FAILED, **fields)
    except LeaseLost:
        run.settle_lost_lease()
        return None
    logger.info("workflow %s failed: %s", run.instance_id, fields["error_message"])
    return State.FAILED
