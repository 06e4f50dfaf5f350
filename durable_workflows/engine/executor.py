"""`execute(instance_id, mode)`: claim an instance, run its function, record the outcome.

The function runs until it returns, raises, or stops at a signal (a durable wait, a lost
lease or a cancel, a database fault). Whatever it did while unwinding, the executor alone
decides and commits the end of the run, after the function is done.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from asgiref.sync import async_to_sync

from .. import serialization
from ..conf import settings
from ..exceptions import (
    ContinueAsNew,
    LeaseLost,
    SerializationError,
    StoreFault,
    Suspend,
    UnknownWorkflow,
)
from ..registry import WorkflowDefinition, get_definition
from ..states import State
from . import clock, generations, heartbeat, observe, runner, stops
from .context import AsyncWorkflowContext, WorkflowContext
from .deadlines import timed_out
from .faults import after_fault
from .lanes import CURRENT
from .runs import Run, after_final, cancel_running, claim, error_fields, has_family, load_records

logger = logging.getLogger("durable_workflows")


def execute(instance_id: str, mode: str = "fresh", epoch: int | None = None, *,
            claim_faults: bool = False) -> str | None:
    """Run one instance until it finishes or pauses. Returns the state it was left in, or
    None when there was nothing to claim (another worker has it, or it already moved on),
    or the run stopped without an outcome (it lost its lease, or the database failed: the
    instance is then recovered). With `claim_faults`, a database error of the claim itself
    is raised as `StoreFault` instead: nothing ran, and the caller (a worker's task, which
    the broker would otherwise count as done) can send the task again."""
    # A run dispatched synchronously from inside a step (django-q2 `sync`, InlineDispatcher)
    # is a workflow run of its own, not part of that step.
    scope = runner.IN_STEP.set(False)
    try:
        try:
            run = claim(instance_id, mode, epoch)
        except StoreFault as fault:
            logger.warning("durable_workflows: could not claim %s: %s", instance_id, fault,
                           extra=observe.about(instance_id))
            after_fault(fault)
            if claim_faults:
                raise
            return None
        if run is None:
            return None
        heartbeat.register(run.lease)
        outcome = _observed(run)
        if run.continued:
            generations.dispatch_next(run)
        return outcome
    finally:
        runner.IN_STEP.reset(scope)


def _observed(run: Run) -> str | None:
    instance = run.instance
    info = run.observed = observe.RunInfo(instance.workflow, run.instance_id, run.mode, run.lease.epoch,
                                          run.woken_at, instance.trace_parent)
    token = observe.run_started(info)
    outcome: str | None = None
    error: BaseException | None = None
    try:
        outcome = _settle(run, _start, run)
        return outcome
    except BaseException as escaped:
        error = escaped
        raise
    finally:
        if outcome == State.FAILED:
            info.error = f"{instance.error_type}: {instance.error_message}"
        observe.run_finished(info, token, outcome, error)


def _settle(run: Run, fn: Any, *args: Any) -> str | None:
    """Call `fn`, turning the signals that end a run without an outcome into None."""
    try:
        try:
            return fn(*args)
        finally:
            heartbeat.unregister(run.lease)
    except LeaseLost:
        try:
            return run.settle_lost_lease()
        except StoreFault as fault:
            _abandon(run, fault)
        return None
    except StoreFault as fault:
        _abandon(run, fault)
        return None


def _abandon(run: Run, fault: StoreFault) -> None:
    """The database failed under the run: give the lease up so that recovery runs the
    instance again at once, or, when even that fails, leave the lease to expire."""
    logger.warning("durable_workflows: run of %s stopped by a database error, to be recovered: %s",
                   run.instance_id, fault, extra=observe.about(run.instance_id, run.instance.workflow))
    after_fault(fault)
    try:
        run.lease.release()
    except Exception:
        logger.info("durable_workflows: the lease of %s will expire instead", run.instance_id,
                    extra=observe.about(run.instance_id, run.instance.workflow))


def _start(run: Run) -> str | None:
    instance = run.instance
    if instance.cancel_requested:
        cancel_running(instance, run.lease)
        return State.CANCELLED
    if instance.deadline_at is not None and instance.deadline_at <= clock.now():
        return _fail(run, timed_out(instance.workflow, instance))
    if run.mode == "recover" and instance.recovery_count > settings.MAX_RECOVERY_ATTEMPTS:
        attempts = instance.recovery_count - 1
        error = RuntimeError(f"failed after {attempts} recovery attempts")
        return _fail(run, error, "RecoveryLimitExceeded")
    try:
        definition = get_definition(instance.workflow)
    except UnknownWorkflow as error:
        return _fail(run, error)
    # An instance's first run has no records yet (unless it is a fork): skip the query.
    first_run = run.mode == "fresh" and instance.run_count == 1 and not instance.forked_from
    records = {} if first_run else load_records(run.instance_id)
    wf, returned, value = run_function(definition, run, records)
    return _conclude(run, definition, wf, returned, value)


def run_function(definition: WorkflowDefinition, run: Run, records: dict[tuple[str, int], Any], *,
                 checking: bool = False) -> tuple[WorkflowContext, bool, Any]:
    """Run the workflow function on `records` in the function's own lane: the context it
    ran with, and (True, its result) or (False, what it raised). `checking` is the replay
    check's run (check.py)."""
    context_class = AsyncWorkflowContext if definition.is_async else WorkflowContext
    wf = context_class(run, records, definition.name)
    wf._checking = checking
    token = CURRENT.set(wf._root)
    try:
        returned, value = _call_function(definition, wf)
    finally:
        CURRENT.reset(token)
    return wf, returned, value


def _call_function(definition: WorkflowDefinition, wf: WorkflowContext) -> tuple[bool, Any]:
    try:
        args, kwargs = serialization.decode_input(wf._run.instance.input)
        if definition.is_async:
            # run_function gave an async definition an AsyncWorkflowContext.
            return async_to_sync(_call_async)(definition, cast(AsyncWorkflowContext, wf), args, kwargs)
        return True, definition.fn(wf, *args, **kwargs)
    except BaseException as error:
        return False, error


async def _call_async(
    definition: WorkflowDefinition, wf: AsyncWorkflowContext, args: list[Any], kwargs: dict[str, Any]
) -> tuple[bool, Any]:
    # Signals are handed back as values: asyncio has rules of its own for BaseException.
    token = CURRENT.set(wf._root)
    wf._root.task = asyncio.current_task()
    try:
        return True, await definition.fn(wf, *args, **kwargs)
    except BaseException as error:
        return False, error
    finally:
        await wf._settled()
        CURRENT.reset(token)


def _conclude(run: Run, definition: WorkflowDefinition, wf: WorkflowContext, returned: bool,
              value: Any) -> str | None:
    """Commit the end of the run. A signal that stopped the run decides it, whatever the
    function did afterwards (caught it, returned, raised something else)."""
    if wf._halted is not None:
        raise wf._halted
    if wf._fatal is not None:
        return _fail(run, wf._fatal)
    root = wf._root
    if isinstance(root.stopped, ContinueAsNew):
        return generations.start_next(run, root.stopped)
    if isinstance(root.stopped, Suspend):
        run.checkpoint.pause(root.waits)
        return State.PAUSED
    if not returned:
        if not stops.is_failure(value):
            raise value  # the engine's own signals, and a stop of the worker (stops.py)
        return _fail(run, value)
    deadline = run.instance.deadline_at
    if deadline is not None and deadline <= clock.now():
        # Its last step ran past the workflow's deadline: the end of the run is its last
        # boundary, and a result that came too late is not a completion.
        return _fail(run, timed_out(definition.name, run.instance))
    try:
        stored = serialization.dumps(value, f"the result of workflow {definition.name!r}")
    except SerializationError as error:
        return _fail(run, error)
    run.events.add("workflow.completed", None, worker=run.lease.owner)  # the executor that finished it
    family = {"family_pending": True} if run.instance.parent_id else {}
    run.checkpoint.finish(State.COMPLETED, result=stored, **family)
    after_final(run.instance)
    return State.COMPLETED


def _fail(run: Run, error: BaseException, error_type: str | None = None) -> str:
    fields: dict[str, Any] = error_fields(error)
    if error_type:
        fields["error_type"] = error_type
    run.events.add("workflow.failed", None, error=f"{fields['error_type']}: {fields['error_message']}")
    run.checkpoint.cancel_children(f"its parent {run.instance_id!r} failed")
    if has_family(run.instance):
        fields["family_pending"] = True
    run.checkpoint.finish(State.FAILED, **fields)
    logger.info("workflow %s failed: %s", run.instance_id, fields["error_message"])
    after_final(run.instance)
    return State.FAILED


