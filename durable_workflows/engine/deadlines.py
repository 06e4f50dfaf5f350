"""The workflow deadline (`@workflow(timeout=...)`): the error an instance fails with once
it has passed, wherever that is noticed (a step boundary, the run's end, a claim, or the
alarm pass for Paused and Queued instances)."""

from __future__ import annotations

from typing import Any

from ..durations import spell_duration
from ..exceptions import WorkflowTimeout
from ..registry import registered


def timed_out(workflow: str, instance: Any) -> WorkflowTimeout:
    # A later generation's deadline counts from its own start (generations.py).
    limit = (instance.deadline_at - (instance.generation_started_at or instance.created_at)).total_seconds()
    return WorkflowTimeout(
        f"workflow {workflow!r} ran past its timeout of {timeout_text(workflow, limit)} (deadline "
        f"{instance.deadline_at:%Y-%m-%d %H:%M:%S %Z})"
    )


def timeout_text(workflow: str, seconds: float) -> str:
    """The timeout in the words its decorator was given ("30 days", "1.5h") while the code
    deployed still says that, else in the largest unit that keeps it whole."""
    definition = registered(workflow)
    if definition is not None and definition.timeout_text and definition.timeout == seconds:
        return definition.timeout_text
    return spell_duration(seconds)
