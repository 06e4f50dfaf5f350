"""Starting instances (DESIGN §14): `start()` and its task in one commit on the ORM broker,
and `start_many()`."""

from __future__ import annotations

import pytest
from django.db import transaction
from django_q.conf import Conf
from django_q.models import OrmQ

from durable_workflows import SerializationError, WorkflowIdConflict, client, start_many
from durable_workflows.models import Event, WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def orm_broker(monkeypatch):
    """django-q2 with its ORM broker on the default database, tasks left in the queue."""
    monkeypatch.setattr(Conf, "SYNC", False)
    OrmQ.objects.all().delete()
    yield
    OrmQ.objects.all().delete()


def tasks() -> int:
    return OrmQ.objects.count()


def test_a_start_and_its_task_commit_together(orm_broker):
    with transaction.atomic():
        handle = client.start("tests.greet", "Ada")
        assert tasks() == 1  # written in the same transaction as the instance
    assert handle.state == "queued" and tasks() == 1
    assert list(Event.objects.filter(instance_id=handle.instance_id).values_list("kind", flat=True)) == [
        "workflow.queued"]


def test_a_rolled_back_start_leaves_neither_instance_nor_task(orm_broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        client.start("tests.greet", "Ada", instance_id="rolled-back")
        raise RuntimeError("the caller's transaction fails")
    assert not WorkflowInstance.objects.filter(pk="rolled-back").exists()
    assert tasks() == 0 and not Event.objects.filter(instance_id="rolled-back").exists()


def test_start_many_starts_each_input_once(orm_broker):
    handles = start_many("tests.greet", [["Ada"], {"name": "Grace"}, ["Alan"]], instance_ids=["a", "b", "c"])
    assert [h.instance_id for h in handles] == ["a", "b", "c"] and all(h.created for h in handles)
    assert tasks() == 3
    again = start_many("tests.greet", [["Ada"], ["Edsger"]], instance_ids=["a", "d"])
    assert [(h.instance_id, h.created) for h in again] == [("a", False), ("d", True)]
    assert tasks() == 4 and WorkflowInstance.objects.count() == 4


def test_start_many_of_a_thousand_in_one_call(orm_broker):
    handles = start_many("tests.greet", [[f"n{i}"] for i in range(1000)])
    assert len(handles) == 1000 and len({h.instance_id for h in handles}) == 1000
    assert WorkflowInstance.objects.filter(state="queued").count() == 1000 and tasks() == 1000


def test_start_many_runs_them_with_a_synchronous_dispatcher():
    handles = start_many("tests.greet", [["Ada"], ["Grace"]])
    assert [h.result() for h in handles] == ["Hello, Ada!", "Hello, Grace!"]


@pytest.mark.parametrize("call, error, message", [
    (lambda: start_many("tests.greet", [["Ada"]], instance_ids=["x", "y"]), ValueError, "2 ids for 1 inputs"),
    (lambda: start_many("tests.greet", [["Ada"], ["Bob"]], instance_ids=["x", "x"]), ValueError, "given twice"),
    (lambda: start_many("tests.greet", [["Ada"], ["Bob", "extra", "args"]]), TypeError, "cannot take these arguments"),
    (lambda: start_many("tests.greet", [["Ada"], "Bob"]), TypeError, "input 1 must be a list"),
    (lambda: start_many("tests.greet", "Ada"), TypeError, "inputs must be a list"),
    (lambda: start_many("no.such.workflow", [[]]), LookupError, "no.such.workflow"),
])
def test_bad_start_many_calls_create_nothing(call, error, message):
    with pytest.raises(error, match=message):
        call()
    assert WorkflowInstance.objects.count() == 0


def test_start_many_with_an_id_of_another_workflow_creates_nothing():
    client.start("engine.types", 1, instance_id="taken")
    with pytest.raises(WorkflowIdConflict):
        start_many("tests.greet", [["Ada"], ["Bob"]], instance_ids=["new", "taken"])
    assert not WorkflowInstance.objects.filter(pk="new").exists()


def test_a_bad_input_in_a_later_batch_leaves_the_earlier_batches_unwritten(orm_broker):
    inputs = [[f"n{i}"] for i in range(501)] + [[object()]]  # the last one cannot be stored
    with pytest.raises(SerializationError):
        start_many("tests.greet", inputs)
    assert WorkflowInstance.objects.count() == 0 and tasks() == 0 and not Event.objects.exists()


def test_an_id_of_another_workflow_in_a_later_batch_creates_nothing(orm_broker):
    client.start("engine.types", 1, instance_id="taken")
    ids = [f"id-{i}" for i in range(501)] + ["taken"]
    with pytest.raises(WorkflowIdConflict):
        start_many("tests.greet", [["Ada"]] * len(ids), instance_ids=ids)
    assert list(WorkflowInstance.objects.values_list("pk", flat=True)) == ["taken"] and tasks() == 1


def test_the_queued_task_is_the_run_of_the_instance(orm_broker):
    from django_q.signing import SignedPackage

    from durable_workflows.tasks import RUN_INSTANCE, run_instance

    handle = client.start("tests.greet", "Ada", instance_id="task-check")
    (row,) = OrmQ.objects.all()
    task = SignedPackage.loads(row.payload)
    assert task["func"] == RUN_INSTANCE and task["args"] == ("task-check", "fresh", 0)
    assert task["name"] == "dw:fresh:0:task-check" and task["save"] is False
    assert run_instance(*task["args"]) == "completed"  # what a worker does with it
    assert handle.refresh().result() == "Hello, Ada!"


def test_a_repeated_start_is_answered_before_its_arguments_are_checked(orm_broker):
    first = client.start("tests.greet", "Ada", instance_id="repeat")
    again = client.start("tests.greet", "too", "many", "arguments", instance_id="repeat")
    assert again.instance_id == first.instance_id and not again.created and tasks() == 1


def test_a_broker_that_is_down_is_named_and_the_instance_is_sent_again_later(monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from durable_workflows import DispatchError, recover

    with monkeypatch.context() as broken:
        broken.setattr(Conf, "SYNC", False)
        broken.setattr(Conf, "ORM", None)
        broken.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")  # nothing listens there
        with pytest.raises(DispatchError, match=r"Redis broker \(redis://127.0.0.1:1/0\) did not take the task"):
            client.start("tests.greet", "Ada", instance_id="broker-down")
    assert client.get("broker-down").state == "queued"  # stored, its task not sent
    WorkflowInstance.objects.filter(pk="broker-down").update(dispatched_at=timezone.now() - timedelta(minutes=5))
    assert "broker-down" in recover()
    assert client.get("broker-down").result() == "Hello, Ada!"


@pytest.mark.django_db(transaction=False)
def test_start_many_runs_them_inside_a_test_case_transaction():
    # As start() does: the test's own transaction never commits, and must not hold them back.
    handles = start_many("tests.greet", [["Ada"], ["Grace"]])
    assert [h.result() for h in handles] == ["Hello, Ada!", "Hello, Grace!"]
