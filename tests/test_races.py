"""`wf.race` (DESIGN §22): the first branch to finish wins, the others stop at their next
primitive, and a replay runs exactly the branch that won."""

from __future__ import annotations

import pytest

from durable_workflows import WorkflowFailed, check_replay, client, send_event
from durable_workflows.engine import fire_alarm_now
from durable_workflows.models import StepKind
from tests.testapp.fault_workflows import RAN

pytestmark = pytest.mark.django_db(transaction=True)


def records(handle) -> list[tuple[str, int, str, str]]:
    return [(s.branch, s.position, s.name, s.state) for s in handle.refresh().steps]


@pytest.mark.parametrize("name", ["races.approval", "races.approval_async"])
def test_the_event_wins_before_the_timer(name):
    handle = client.start(name, "e").refresh()
    assert handle.state == "paused"
    assert handle.alarm is not None and handle.alarm.branch == "0:1"  # the day's sleep
    send_event(handle.instance_id, "approved", {"by": "ann"})
    assert handle.refresh().result() == {"index": 0, "value": {"by": "ann"}, "after": "e-after"}
    assert RAN["e-after"] == 1
    race = next(s for s in handle.steps if s.kind == StepKind.PARALLEL)
    assert (race.name, race.result, race.position) == ("race", 0, 0)


@pytest.mark.parametrize("name", ["races.approval", "races.approval_async"])
def test_the_timer_wins_when_no_event_comes(name):
    handle = client.start(name, "t").refresh()
    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == {"index": 1, "value": None, "after": "t-after"}
    assert RAN["t-after"] == 1


def test_a_loser_in_a_step_finishes_it_and_starts_nothing_new():
    handle = client.start("races.slow_loser", "s").refresh()
    assert handle.result() == (1, "s-fast")
    assert RAN["s-fast"] == 1 and RAN["s-slow-next"] == 0
    assert ("0:0", 0, "slow", "completed") in records(handle)
    assert not [r for r in records(handle) if r[2] == "slow-next"]


def test_a_branch_that_fails_first_fails_the_race():
    handle = client.start("races.failing", "f").refresh()
    assert handle.state == "failed"
    with pytest.raises(WorkflowFailed, match="KeyError"):
        handle.result()


def test_a_replay_after_the_race_runs_only_the_winner():
    handle = client.start("races.steps_then_wait", "r").refresh()
    assert handle.state == "paused" and (RAN["r-left"], RAN["r-right"]) == (1, 1)
    send_event(handle.instance_id, "right", "R")
    assert handle.refresh().state == "paused"  # in the hour's sleep after the race
    # The loser's event comes now: nothing takes it, and the replay below must not either.
    send_event(handle.instance_id, "left", "L")
    assert check_replay("races.steps_then_wait") == []
    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == [1, "R"]
    assert (RAN["r-left"], RAN["r-right"]) == (1, 1)
    left_wait = next(r for r in records(handle) if r[0] == "0:0" and r[1] == 1)
    assert left_wait[3] != "completed"  # abandoned where it waited


@pytest.mark.parametrize("name, error", [("races.empty", "ValueError"), ("races.not_callable", "TypeError")])
def test_a_race_it_cannot_run_fails_the_instance_naming_why(name, error):
    handle = client.start(name).refresh()
    assert handle.state == "failed" and handle.error["type"] == error
    assert "wf.race" in handle.error["message"]
