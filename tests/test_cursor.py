"""A primitive written with the cursor's public methods alone (engine/cursor.py): it replays
what it recorded, and a replay check stops it at the frontier before its side effect."""

from __future__ import annotations

from typing import Any

import pytest

from durable_workflows import check_replay, client, serialization, workflow
from durable_workflows.engine.cursor import Cursor
from durable_workflows.models import StepKind, StepRecord, StepState, WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)

#: What the primitive's side effect did, by name.
EFFECTS: list[str] = []


def remember(wf: Any, name: str, value: str) -> str:
    """A tiny primitive: records `value` once, as a step would, doing its side effect first."""
    cursor = Cursor.enter(wf, "remember")
    record = cursor.replay(name, StepKind.STEP)
    if record is not None:
        return serialization.loads(record.result)
    cursor.stage()
    EFFECTS.append(name)
    record = cursor.new_record(name, StepKind.STEP, state=StepState.COMPLETED,
                               result=serialization.dumps(value, "a remembered value"), attempts=1)
    record.finished_at = record.started_at
    cursor.keep(record)
    return value


@workflow("cursor.remember")
def remembering(wf: Any) -> str:
    first = remember(wf, "first", "a")
    wf.sleep("1h")
    return first + remember(wf, "second", "b")


@pytest.fixture(autouse=True)
def _effects():
    EFFECTS.clear()
    yield
    EFFECTS.clear()


def test_the_primitive_records_once_and_replays_the_record():
    handle = client.start("cursor.remember").refresh()
    assert handle.state == "paused" and EFFECTS == ["first"]
    record = StepRecord.objects.get(instance_id=handle.instance_id, position=0)
    assert (record.name, record.kind, record.state) == ("first", StepKind.STEP, StepState.COMPLETED)
    assert check_replay() == []
    assert EFFECTS == ["first"]  # replayed, not run again


def test_a_replay_check_stops_the_primitive_at_the_frontier_before_its_side_effect():
    WorkflowInstance.objects.create(id="fresh", workflow="cursor.remember", input=serialization.encode_input((), {}),
                                    state="paused")
    assert check_replay() == []
    assert EFFECTS == []
    assert not StepRecord.objects.filter(instance_id="fresh").exists()
