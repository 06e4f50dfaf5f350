"""Parallel branches (DESIGN §9): `wf.parallel`, `wf.map` and `asyncio.gather` of steps,
through the public API."""

from __future__ import annotations

import pytest
from django.db import connection

from durable_workflows import client, send_event
from durable_workflows.engine import fire_alarm_now
from durable_workflows.models import StepRecord
from tests.testapp.branch_workflows import resumed_under
from tests.testapp.fault_workflows import RAN

pytestmark = pytest.mark.django_db(transaction=True)


def slots(handle) -> list[tuple[str, int, str, str]]:
    return [(s.branch, s.position, s.name, s.state) for s in handle.steps]


@pytest.mark.parametrize("name", ["branches.three", "branches.three_async", "branches.gather_sync_steps"])
def test_three_steps_run_at_the_same_time(name):
    # Each step returns only once all three are running at once: run one after the other,
    # the first would fail with a TimeoutError.
    handle = client.start(name, name).refresh()
    assert handle.state == "completed", handle.error
    assert handle.result() == [0, 1, 2]
    assert RAN[name] == 3


def test_branches_have_positions_of_their_own():
    handle = client.start("branches.three", "pos").refresh()
    assert slots(handle) == [(f"0:{i}", 0, f"S{i}", "completed") for i in range(3)]


def test_gathered_steps_keep_their_call_order():
    handle = client.start("branches.gather_sync_steps", "order").refresh()
    assert [(s.branch, s.position, s.name) for s in handle.steps] == [("", i, f"S{i}") for i in range(3)]


def test_a_sleeping_branch_pauses_the_run_and_the_finished_one_does_not_run_again():
    handle = client.start("branches.sleeper", "s").refresh()
    assert handle.state == "paused"
    assert (RAN["s-fast"], RAN["s-before"], RAN["s-after"]) == (1, 1, 0)
    assert handle.alarm is not None and handle.alarm.branch == "0:1"
    fire_alarm_now(handle.instance_id)
    done = handle.refresh()
    assert done.result() == {"fast": "s-fast", "slow": "s-after", "then": "s-then"}
    assert (RAN["s-fast"], RAN["s-before"], RAN["s-after"], RAN["s-then"]) == (1, 1, 1, 1)
    assert slots(done) == [
        ("0:0", 0, "fast", "completed"), ("0:1", 0, "before", "completed"),
        ("0:1", 1, "sleep", "completed"), ("0:1", 2, "after", "completed"), ("", 1, "then", "completed"),
    ]


def test_the_pause_wakes_at_the_first_wait_to_end_and_the_other_waits_on():
    handle = client.start("branches.two_sleepers").refresh()
    alarm = handle.alarm
    assert handle.state == "paused" and (alarm.branch, alarm.position) == ("0:1", 0)
    fire_alarm_now(handle.instance_id)  # ends the one-hour sleep only
    again = handle.refresh()
    assert again.state == "paused" and RAN["woke-1"] == 1 and RAN["woke-0"] == 0
    assert (again.alarm.branch, again.alarm.position) == ("0:0", 0)
    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == [0, 1]
    assert (RAN["woke-0"], RAN["woke-1"]) == (1, 1)


def test_the_first_error_in_branch_order_is_raised():
    # C fails first, A after it: A's error is the one raised; B finishes its step.
    handle = client.start("branches.first_error").refresh()
    assert handle.result() == "ValueError: first-A failed"
    states = {s.name: s.state for s in handle.steps}
    # The marker at the parallel's position records that a branch failed there.
    assert states == {"parallel": "failed", "A": "failed", "B": "completed", "C": "failed"}


def test_after_a_branch_fails_the_others_start_nothing_new():
    handle = client.start("branches.stop_others").refresh()
    assert handle.result() == "stop-A failed"
    assert RAN["stop-B"] == 0 and [s.name for s in handle.steps] == ["parallel", "A"]


def test_a_failing_branch_replays_its_failure():
    handle = client.start("branches.retry", "r").refresh()
    assert handle.state == "paused" and RAN["r"] == 1 and RAN["r-steady"] == 1
    fire_alarm_now(handle.instance_id)
    assert handle.refresh().result() == ["ok", "r-steady"]
    assert RAN["r"] == 2 and RAN["r-steady"] == 1


@pytest.mark.parametrize("limit", [None, 1, 2])
def test_map_runs_one_step_per_item_and_returns_results_in_order(limit):
    handle = client.start("branches.map", [3, 1, 2, 5], limit).refresh()
    assert handle.result() == [9, 1, 4, 25]
    assert [(s.branch, s.name) for s in handle.steps] == [(f"0:{i}", f"Square[{i}]") for i in range(4)]


def test_map_in_an_async_workflow():
    assert client.start("branches.map_async", [1, 2, 3]).refresh().result() == [1, 4, 9]


def test_nested_parallels_have_branches_of_branches():
    handle = client.start("branches.nested").refresh()
    assert handle.result() == [["n0-x", "n0-y"], ["n1-x", "n1-y"]]
    assert [s.branch for s in handle.steps] == ["0:0/0:0", "0:0/0:1", "0:1/0:0", "0:1/0:1"]


def test_branches_wait_for_events_and_children():
    handle = client.start("branches.waits").refresh()
    assert handle.state == "paused"
    assert send_event(handle.instance_id, "go", {"ok": 1})
    assert handle.refresh().result() == [{"ok": 1}, 16, "waits-plain"]
    assert RAN["waits-plain"] == 1 and RAN["square-4"] == 1
    assert handle.children == [f"{handle.instance_id}.0:1.0"]


def test_nondeterminism_inside_a_branch_names_the_branch_position():
    handle = client.start("branches.changes").refresh()
    assert handle.state == "paused"
    resumed_under("Renamed", handle.instance_id)
    failed = handle.refresh()
    assert failed.state == "failed" and failed.error["type"] == "NonDeterminismError"
    assert "position 1 of branch 0:1 (branch 1 of the wf.parallel at position 0)" in failed.error["message"]
    assert "'Renamed'" in failed.error["message"] and "'B'" in failed.error["message"]


@pytest.mark.parametrize("how, expected", [
    ("not_callable", "TypeError: wf.parallel: branch 1 is not callable"),
    ("zero", "ValueError: max_concurrency must be at least 1, got 0"),
    ("thread", "StepScopeError: a workflow primitive was called from a thread the engine did not start"),
])
def test_bad_input_is_refused_before_anything_runs(how, expected):
    handle = client.start("branches.bad", how).refresh()
    assert handle.result().startswith(expected)
    assert RAN["bad-ok"] == 0 and RAN["bad-outside"] == 0
    # Nothing was recorded for the refused call: the next step takes position 0.
    assert [(s.branch, s.position, s.name) for s in handle.steps] == [("", 0, "after")]


def test_no_branches_and_no_items_return_empty_lists():
    handle = client.start("branches.empty").refresh()
    assert handle.result() == [[], [], "empty-after"]
    assert [(s.position, s.name) for s in handle.steps] == [(2, "after")]


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_branch_threads_close_their_connections():
    def open_connections() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return cursor.fetchone()[0]

    before = open_connections()
    for _ in range(3):
        assert client.start("branches.queries", 8).refresh().state == "completed"
    assert open_connections() == before
    assert StepRecord.objects.filter(kind="step", name__startswith="Count[").count() == 24


def test_primitives_from_tasks_the_engine_did_not_start_are_refused():
    # Helper coroutines gathered together would call their second steps in the order the
    # first ones end, which a replay need not repeat: refused, as a thread of one's own is.
    handle = client.start("branches.gather_helpers").refresh()
    assert handle.state == "failed" and handle.error["type"] == "StepScopeError"
    assert "asyncio task the engine did not start" in handle.error["message"]


def test_gathered_run_child_calls_keep_their_positions():
    handle = client.start("branches.gather_children").refresh()
    assert handle.result() == [4, 9]
    assert [(s.position, s.kind) for s in handle.steps] == [(0, "start_child"), (1, "child"),
                                                            (2, "start_child"), (3, "child")]


def test_the_time_after_a_gather_is_the_same_on_replay():
    handle = client.start("branches.gather_clock").refresh()
    fire_alarm_now(handle.instance_id)
    first, replayed = handle.refresh().result()
    assert first == replayed


def test_a_send_that_woke_one_wait_is_no_timeout_for_the_other():
    handle = client.start("branches.same_event").refresh()
    assert handle.state == "paused"
    send_event(handle.instance_id, "x", 1)
    assert handle.refresh().state == "paused"  # one wait took it; the other waits on
    send_event(handle.instance_id, "x", 2)
    assert sorted(handle.refresh().result()) == [1, 2]


def test_a_branch_stopped_by_its_sibling_starts_nothing_on_replay_either():
    from tests.testapp.branch_workflows import LIMIT

    handle = client.start("branches.aborted").refresh()
    assert handle.state == "paused" and RAN["ab-setup"] == 0
    LIMIT["n"] = None  # the replay runs both branches at once
    try:
        fire_alarm_now(handle.instance_id)
    finally:
        LIMIT["n"] = 1
    assert handle.refresh().result() == "ab-validate failed"
    assert (RAN["ab-validate"], RAN["ab-setup"], RAN["ab-pay"]) == (1, 0, 0)


def test_a_parallel_replaced_by_a_step_is_nondeterminism():
    handle = client.start("branches.replaced").refresh()
    resumed_under("other", handle.instance_id)
    failed = handle.refresh()
    assert failed.state == "failed" and failed.error["type"] == "NonDeterminismError"
    assert "the code now calls step 'instead' where the recorded run has wf.parallel" in failed.error["message"]
    assert RAN["rp-instead"] == 0


def test_a_child_started_in_a_branch_starts_while_its_siblings_run():
    handle = client.start("branches.child_beside_step").refresh()
    assert handle.result() == [49, "saw it"]
