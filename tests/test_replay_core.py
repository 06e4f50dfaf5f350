"""The replay core on the memory store: no database at all (these tests are not allowed one,
so any query would fail them). What a run records, how a replay returns it, and how a run
pauses and resumes are the engine's, whatever store holds them."""

from __future__ import annotations

import pytest

from durable_workflows.engine import execute
from durable_workflows.engine.lifecycle import conceive
from durable_workflows.engine.store import MemoryStore, use
from durable_workflows.registry import get_definition
from durable_workflows.serialization import loads
from tests.testapp import patch_workflows
from tests.testapp.branch_workflows import RAN
from tests.testapp.engine_workflows import SEEN


@pytest.fixture
def store():
    RAN.clear()
    memory = MemoryStore()
    with use(memory):
        yield memory


def started(store, workflow, *args, instance_id="run-1", **kwargs):
    store.insert(conceive(get_definition(workflow), list(args), kwargs, instance_id))
    return instance_id


def test_a_run_records_each_step_once_and_completes(store):
    instance_id = started(store, "engine.loop", 3)
    assert execute(instance_id, "fresh", 0) == "completed"
    instance = store.instance(instance_id)
    assert (instance.state, loads(instance.result)) == ("completed", 0 + 1 + 2)
    assert SEEN["add"] == 3
    records = store.load_records(instance_id)
    assert [(slot, r.state) for slot, r in sorted(records.items())] == [
        (("", 0), "completed"), (("", 1), "completed"), (("", 2), "completed")]


def kinds(store, instance_id):
    return [kind for kind, _, _ in store.event_rows(instance_id)]


def resumed(store, instance_id):
    """Fire the instance's alarm, as the ticker would, and run the resume it dispatches."""
    epoch = store.fire(instance_id, store.alarm(instance_id).fire_at)
    return execute(instance_id, "resume", epoch)


def test_a_sleep_pauses_the_run_and_its_resume_replays_the_steps_before_it(store):
    instance_id = started(store, "engine.between", "1h")
    assert execute(instance_id, "fresh", 0) == "paused"
    assert store.alarm(instance_id).reason == "sleep"
    assert (SEEN["first"], SEEN["after-sleep"]) == (1, 0)
    assert resumed(store, instance_id) == "completed"
    assert (SEEN["top"], SEEN["first"], SEEN["after-sleep"], SEEN["second"]) == (2, 1, 1, 1)
    assert loads(store.instance(instance_id).result) == 2
    assert kinds(store, instance_id) == ["workflow.started", "sleep.started", "workflow.paused", "workflow.resumed",
                                         "sleep.completed", "workflow.completed"]


def test_a_resume_before_the_alarm_fired_replays_and_pauses_again(store):
    instance_id = started(store, "engine.between", "1h")
    execute(instance_id, "fresh", 0)
    assert execute(instance_id, "resume", 1) == "paused"
    assert SEEN["first"] == 1 and SEEN["after-sleep"] == 0


def test_a_retried_step_waits_for_its_delay_and_fails_the_instance_when_attempts_run_out(store):
    instance_id = started(store, "engine.retrying", "constant", 3, "10s")
    assert execute(instance_id, "fresh", 0) == "paused"
    assert store.alarm(instance_id).reason == "retry"
    assert resumed(store, instance_id) == "paused"
    assert resumed(store, instance_id) == "failed"
    instance = store.instance(instance_id)
    assert (instance.error_type, SEEN["fails"]) == ("ConnectionError", 3)
    assert store.load_records(instance_id)[("", 0)].attempts == 3


def test_published_meta_goes_out_with_the_runs_writes(store):
    instance_id = started(store, "engine.meta", 2)
    assert execute(instance_id, "fresh", 0) == "paused"
    assert store.instance(instance_id).meta == {"progress": {"done": 2, "total": 2}}


@pytest.mark.parametrize("workflow", ["branches.three", "branches.three_async"])
def test_parallel_branches_record_their_steps_on_lanes_of_their_own(store, workflow):
    instance_id = started(store, workflow, "core")
    assert execute(instance_id, "fresh", 0) == "completed"
    assert sorted(slot for slot in store.load_records(instance_id) if slot[0]) == [
        ("0:0", 0), ("0:1", 0), ("0:2", 0)]


def test_code_that_changes_under_a_recorded_run_fails_it_as_non_deterministic(store):
    instance_id = started(store, "patches.order")
    assert execute(instance_id, "fresh", 0) == "paused"
    record = store._records[instance_id][("", 0)]
    record.name = "Renamed"  # the history as an older release would have recorded it
    assert resumed(store, instance_id) == "failed"
    assert store.instance(instance_id).error_type == "NonDeterminismError"


def test_a_patch_is_taken_by_a_new_run_and_skipped_by_one_recorded_before_it(store):
    old = started(store, "patches.order", instance_id="old")
    execute(old, "fresh", 0)
    patch_workflows.VERSION["v"] = 2
    new = started(store, "patches.order", instance_id="new")
    execute(new, "fresh", 0)
    assert resumed(store, old) == "completed" and resumed(store, new) == "completed"
    assert (RAN["p-A"], RAN["p-X"], RAN["p-B"]) == (2, 1, 2)


def test_a_run_whose_worker_died_is_recovered_and_runs_only_what_it_had_not_recorded(store):
    from datetime import timedelta

    from durable_workflows.engine import clock

    instance_id = started(store, "engine.loop", 2)
    now = clock.now()
    store.claim(instance_id, "fresh", 0, "dead:1:1", now, now - timedelta(seconds=1))  # then it died
    assert execute(instance_id, "recover") == "completed"
    assert SEEN["add"] == 2
    assert kinds(store, instance_id)[:2] == ["workflow.started", "workflow.recovered"]


def test_a_step_that_raises_without_a_retry_fails_the_instance_with_its_error(store):
    instance_id = started(store, "engine.no_retry")
    assert execute(instance_id, "fresh", 0) == "failed"
    instance = store.instance(instance_id)
    assert instance.error_type == "ValueError" and instance.finished_at is not None
