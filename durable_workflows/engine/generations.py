"""`wf.continue_as_new(*args, **kwargs)`: the same instance over again, with new arguments
and an empty history.

A workflow that loops for as long as it lives (a poller, a subscription, a batch job over an
endless cursor) would otherwise grow its history without end, and every resume would replay
all of it. Continuing as new ends the run as a pause does: the call checks what it was given,
then unwinds the function with `ContinueAsNew` (one of the engine's run signals, which a
workflow's `except Exception:` does not see), and the executor commits the next generation
once the function is done: in one fenced transaction the instance takes the new input, its
`generation` goes up by one, its step records and the inbox messages its waits took are
deleted, and it moves from Running to Paused with an alarm fired now. Its resume is then
dispatched at once; a lost dispatch is sent again by the scans, as for any fired alarm.

What the run had buffered (a finished step's record, children it started, `set_meta`
values, messages it took) is written first, in a commit of its own. A crash between that
commit and the next generation's replays the run, which reaches the same `continue_as_new`
with the same arguments and continues once.

Events sent and not yet taken stay in the inbox, for the next generation's waits. Meta, the
run count and the instance's creation and start times stay. A generation has a start of its
own (`generation_started_at`), from which `wf.now()` starts, as the first generation's does
from the instance's creation, and from which the workflow deadline (`@workflow(timeout=...)`)
counts again: a workflow that loops for ever needs each turn bounded, not its whole life.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from ..exceptions import ContinueAsNew, StepScopeError
from ..registry import get_definition
from ..serialization import encode_input
from ..states import State, as_state, transition_values
from . import clock
from .faults import engine_io
from .observe import about
from .waits import resume_on_commit

if TYPE_CHECKING:
    from .lanes import Lane
    from .runs import Run

logger = logging.getLogger("durable_workflows")


def continue_at(workflow: str, lane: Lane, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn:
    """Check the call, then stop the run with `ContinueAsNew`. A refusal raises into the
    workflow, which may catch it; nothing has changed then."""
    if lane.branch:
        raise StepScopeError(
            "wf.continue_as_new() was called inside a branch of wf.parallel() or wf.race(): it ends "
            "the whole run, and the other branches would be cut off wherever they are. Call it from "
            "the workflow function itself, once the branches are done")
    get_definition(workflow).check_arguments(args, kwargs)
    signal = ContinueAsNew(encode_input(args, kwargs))
    lane.stopped = signal  # a primitive called while the function unwinds raises it again
    raise signal


def start_next(run: Run, signal: ContinueAsNew) -> str:
    """Commit the instance's next generation (see the module's docstring)."""
    checkpoint = run.checkpoint
    if checkpoint.dirty or checkpoint.taken or checkpoint.children or checkpoint.meta is not None:
        checkpoint.save()
    instance = run.instance
    generation = instance.generation + 1
    timeout = get_definition(instance.workflow).timeout
    now = clock.now()
    fields: dict[str, Any] = {
        "input": signal.input, "generation": generation, "generation_started_at": now,
        "recovery_count": 0, "lease_owner": "",
        "lease_expires_at": None, "deadline_at": None if timeout is None else now + timedelta(seconds=timeout),
    }
    values = transition_values(as_state(instance.state), State.PAUSED, fields)
    events = run.events
    events.add("workflow.continued", None, generation=generation)
    with engine_io():
        checkpoint.store.continue_as_new(run.lease.fence, values, events.rows())
    for key, value in values.items():
        setattr(instance, key, value)
    events.send()
    run.continued = True
    return State.PAUSED


def dispatch_next(run: Run) -> None:
    """Send the new generation's resume, once the run that continued is over. A dispatch
    that fails is logged: the scans send the fired alarm's resume again."""
    try:
        resume_on_commit(run.instance)
    except Exception:
        logger.warning("durable_workflows: could not dispatch the next generation of %s; recovery will",
                       run.instance_id, exc_info=True, extra=about(run.instance_id, run.instance.workflow))
