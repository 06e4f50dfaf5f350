"""The chaos run's workflow: five short steps, each logged to the step log (DW_STEP_LOG)
with its process, epoch and times, so that the checks can count executions and tell which
ones a fault cut short. Found by the app's autodiscovery in every process of a chaos run."""

from __future__ import annotations

from durable_workflows import workflow
from tests.workers.workflows import _epoch, logged

STEPS = [f"step-{n}" for n in range(5)]


@workflow("chaos.five_steps")
def five_steps(wf, seconds: float = 0.1) -> int:
    for name in STEPS:
        wf.step(name, logged, wf.instance_id, _epoch(wf), name, seconds)
    return len(STEPS)
