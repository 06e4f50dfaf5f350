"""What every store promises (engine/store/base.py), held against each of them: the memory
store without a database, the ORM store on the database of this run, and the PostgreSQL
store where its single statements apply (psycopg 3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from durable_workflows.engine import clock
from durable_workflows.engine.events import EventBuffer
from durable_workflows.engine.fence import Fence
from durable_workflows.engine.lease import Lease
from durable_workflows.engine.lifecycle import conceive
from durable_workflows.engine.store import (
    MemoryStore,
    OrmStore,
    PostgresStore,
    Store,
    Write,
    single_statements,
)
from durable_workflows.engine.waits import Wait
from durable_workflows.exceptions import LeaseLost
from durable_workflows.models import AlarmReason, StepKind, StepRecord, StepState
from durable_workflows.registry import get_definition
from durable_workflows.states import State, transition_values

OWNER = "host:1:1"


ON_THE_DATABASE = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["memory", pytest.param("orm", marks=ON_THE_DATABASE),
                        pytest.param("postgresql", marks=ON_THE_DATABASE)])
def store(request) -> Store:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "orm":
        return OrmStore()
    if not single_statements():
        pytest.skip("the PostgreSQL store's statements need PostgreSQL through psycopg 3")
    return PostgresStore()


def born(store: Store, instance_id: str, state: State = State.QUEUED):
    instance = conceive(get_definition("engine.loop"), [2], {}, instance_id, state=state)
    store.insert(instance)
    return store.instance(instance_id)


def claimed(store: Store, instance_id: str, mode: str = "fresh", epoch: int | None = 0, *, lease: float = 30.0):
    now = clock.now()
    return store.claim(instance_id, mode, epoch, OWNER, now, now + timedelta(seconds=lease))


def step(instance_id: str, position: int, state: str = StepState.COMPLETED, **fields) -> StepRecord:
    return StepRecord.new(instance_id=instance_id, branch="", position=position, name=f"Step {position}",
                          kind=StepKind.STEP, state=state, attempts=1, result=str(position), **fields)


def write(fence: Fence, records=(), events=(), **kwargs) -> Write:
    return Write(fence, kwargs.pop("values", {}), list(records), list(events),
                 lease_until=clock.now() + timedelta(seconds=30), **kwargs)


def buffered(instance_id: str, *kinds: str):
    buffer = EventBuffer(instance_id, "engine.loop")
    for kind in kinds:
        buffer.add(kind, 0, name="Step 0")
    return buffer.rows()


def test_a_fresh_claim_takes_a_queued_instance_for_its_epoch(store):
    born(store, "a")
    taken = claimed(store, "a")
    assert taken is not None
    instance = store.instance("a")
    assert (instance.state, instance.epoch, instance.lease_owner, instance.run_count) == (State.RUNNING, 1, OWNER, 1)
    assert instance.started_at is not None and instance.lease_expires_at > clock.now()
    assert taken.instance.epoch == 1 and taken.woken is None
    assert [kind for kind, _, _ in store.event_rows("a")] == ["workflow.started"]


@pytest.mark.parametrize("epoch", [1, 7])
def test_a_claim_for_an_epoch_that_moved_on_takes_nothing(store, epoch):
    born(store, "a")
    assert claimed(store, "a", epoch=epoch) is None
    assert store.instance("a").state == State.QUEUED and store.event_rows("a") == []


def test_a_running_instance_is_not_claimed_fresh_again_nor_a_live_one_recovered(store):
    born(store, "a")
    claimed(store, "a")
    assert claimed(store, "a", epoch=1) is None
    assert claimed(store, "a", "recover", epoch=None) is None
    assert store.instance("a").epoch == 1


def test_a_lapsed_lease_is_taken_over_by_a_recovery(store):
    born(store, "a")
    claimed(store, "a", lease=-1.0)
    taken = claimed(store, "a", "recover", epoch=None)
    assert taken is not None
    instance = store.instance("a")
    assert (instance.state, instance.epoch, instance.recovery_count) == (State.RUNNING, 2, 1)
    assert store.event_rows("a")[-1] == ("workflow.recovered", None, {"attempt": 1})


# With events, and without (a step's checkpoint: on PostgreSQL a statement of its own).
@pytest.mark.parametrize("kinds", [("step.failed",), ()])
def test_a_write_under_the_fence_stores_records_and_events(store, kinds):
    born(store, "a")
    claimed(store, "a")
    records = [step("a", 0), step("a", 1)]
    before = store.event_rows("a")
    done = write(Fence("a", 1), records, buffered("a", *kinds))
    store.commit(done)
    assert all(r.pk is not None and not r._state.adding for r in records)
    assert len({r.pk for r in records}) == 2
    loaded = store.load_records("a")
    assert sorted(loaded) == [("", 0), ("", 1)] and loaded[("", 1)].result == "1"
    assert {slot: r.pk for slot, r in loaded.items()} == {r.slot: r.pk for r in records}
    if kinds:
        assert store.event_rows("a")[-1] == ("step.failed", 0, {"name": "Step 0"})
    else:
        assert store.event_rows("a") == before


def test_a_record_written_again_is_updated_in_place(store):
    born(store, "a")
    claimed(store, "a")
    record = step("a", 0, StepState.RUNNING)
    store.commit(write(Fence("a", 1), [record]))
    record.state, record.result = StepState.COMPLETED, "done"
    store.commit(write(Fence("a", 1), [record]))
    loaded = store.load_records("a")
    assert len(loaded) == 1 and (loaded[("", 0)].state, loaded[("", 0)].result) == (StepState.COMPLETED, "done")


@pytest.mark.parametrize("kinds", [("step.failed",), ()])
@pytest.mark.parametrize("why", ["another claim", "a cancel request"])
def test_a_write_whose_fence_no_longer_holds_writes_nothing(store, why, kinds):
    born(store, "a")
    claimed(store, "a", lease=-1.0)
    if why == "another claim":
        claimed(store, "a", "recover", epoch=None)
    else:
        assert store.renew(Lease("a", 1, OWNER, store=store)) is False
        _request_cancel(store, "a")
    before = store.event_rows("a")
    with pytest.raises(LeaseLost):
        store.commit(write(Fence("a", 1), [step("a", 0)], buffered("a", *kinds)))
    assert store.load_records("a") == {} and store.event_rows("a") == before


def test_a_transition_moves_the_instance_with_its_last_records(store):
    born(store, "a")
    claimed(store, "a")
    values = transition_values(State.RUNNING, State.COMPLETED, {"result": "2"})
    store.commit(write(Fence("a", 1), [step("a", 0)], buffered("a", "workflow.completed"), values=values,
                       transition=True))
    instance = store.instance("a")
    assert (instance.state, instance.result, instance.lease_owner) == (State.COMPLETED, "2", "")
    assert instance.finished_at is not None and list(store.load_records("a")) == [("", 0)]


def test_a_pause_sets_the_alarm_of_the_first_wait_to_end_and_a_resume_takes_it_once_fired(store):
    born(store, "a")
    claimed(store, "a")
    soon, later = clock.now() + timedelta(hours=1), clock.now() + timedelta(hours=2)
    waits = [Wait(step("a", 0, StepState.SLEEPING, wake_at=later), AlarmReason.SLEEP),
             Wait(step("a", 1, StepState.SLEEPING, wake_at=soon), AlarmReason.SLEEP)]
    values = transition_values(State.RUNNING, State.PAUSED, {"lease_owner": "", "lease_expires_at": None})
    store.commit(write(Fence("a", 1), [w.record for w in waits], values=values, transition=True, waits=waits))
    alarm = store.alarm("a")
    assert (alarm.position, alarm.reason, alarm.fire_at, alarm.epoch) == (1, AlarmReason.SLEEP, soon, 1)
    early = claimed(store, "a", "resume", epoch=1)
    assert early is not None and early.woken is None and store.alarm("a") is not None
    _pause_again(store, "a", 2, waits)
    assert store.fire("a", clock.now()) == 2
    woken = claimed(store, "a", "resume", epoch=2)
    assert woken is not None and woken.woken == ("", 1) and woken.woken_at is not None
    assert store.alarm("a") is None


def _next_generation(store: Store, epoch: int) -> None:
    values = transition_values(State.RUNNING, State.PAUSED, {"input": '{"args": [3]}', "generation": 1,
                                                             "lease_owner": "", "lease_expires_at": None})
    store.continue_as_new(Fence("a", epoch), values, buffered("a", "workflow.continued"))


def test_a_new_generation_starts_with_no_records_and_an_alarm_fired_now(store):
    born(store, "a")
    claimed(store, "a")
    store.commit(write(Fence("a", 1), [step("a", 0), step("a", 1)]))
    with pytest.raises(LeaseLost):
        _next_generation(store, 0)
    assert len(store.load_records("a")) == 2 and store.instance("a").generation == 0
    _next_generation(store, 1)
    instance = store.instance("a")
    assert (instance.state, instance.generation, instance.input) == (State.PAUSED, 1, '{"args": [3]}')
    assert store.load_records("a") == {}
    alarm = store.alarm("a")
    assert (alarm.reason, alarm.epoch, alarm.fired_at is not None) == (AlarmReason.CONTINUED, 1, True)
    assert store.event_rows("a")[-1][0] == "workflow.continued"
    resumed = claimed(store, "a", "resume", epoch=1)
    assert resumed is not None and resumed.instance.generation == 1 and store.alarm("a") is None


def test_the_heartbeat_renews_only_the_owners_lease_and_hears_of_a_cancel(store):
    born(store, "a")
    claimed(store, "a")
    lease = Lease("a", 1, OWNER, store=store)
    assert store.renew(lease) is False
    assert store.renew(Lease("a", 1, "someone else", store=store)) is None
    _request_cancel(store, "a")
    assert store.renew(lease) is True
    assert store.current(Fence("a", 1)) is not None, "a cancel request leaves the instance the run's"
    store.release(lease)
    assert store.instance("a").lease_owner == ""
    assert store.current(Fence("a", 2)) is None


def test_a_held_instance_is_claimed_by_no_mode_and_refuses_only_the_write_of_new_work(store):
    born(store, "a")
    _hold(store, "a", True)
    assert claimed(store, "a") is None and claimed(store, "a", epoch=None) is None
    _hold(store, "a", False)
    assert claimed(store, "a") is not None
    _hold(store, "a", True)
    with pytest.raises(LeaseLost):
        store.commit(write(Fence("a", 1).new_work, [step("a", 0)]))
    store.commit(write(Fence("a", 1), [step("a", 0)]))  # work already done is kept
    assert store.current(Fence("a", 1)) is not None and set(store.load_records("a")) == {("", 0)}
    store.release(Lease("a", 1, OWNER, store=store))
    assert claimed(store, "a", "recover", epoch=None) is None


def test_children_are_known_by_their_parent(store):
    born(store, "parent")
    assert not store.has_children("parent")
    child = conceive(get_definition("engine.loop"), [1], {}, "child", state=State.QUEUED, parent_id="parent",
                    parent_position=0)
    store.insert(child)
    assert store.has_children("parent") and not store.has_children("child")


def _request_cancel(store: Store, instance_id: str) -> None:
    """What `client.cancel` of a Running instance does to its row, done the store's way."""
    if isinstance(store, MemoryStore):
        store._instances[instance_id].cancel_requested = True
    else:
        from durable_workflows.models import WorkflowInstance

        WorkflowInstance.objects.filter(pk=instance_id).update(cancel_requested=True)


def _hold(store: Store, instance_id: str, held: bool) -> None:
    """What `client.pause` (or `client.resume`) does to the row, done the store's way."""
    if isinstance(store, MemoryStore):
        store._instances[instance_id].held = held
    else:
        from durable_workflows.models import WorkflowInstance

        WorkflowInstance.objects.filter(pk=instance_id).update(held=held)


def _pause_again(store: Store, instance_id: str, epoch: int, waits: list[Wait]) -> None:
    values = transition_values(State.RUNNING, State.PAUSED, {"lease_owner": "", "lease_expires_at": None})
    store.commit(write(Fence(instance_id, epoch), [], values=values, transition=True, waits=waits))
