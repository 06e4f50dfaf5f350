"""Every way an instance is made gives it its fields by the same rules (engine/lifecycle.py):
its deadline counted from its creation time, its concurrency key (stored as JSON), its
stored input, and the
time it was handed to a worker when it was."""

from __future__ import annotations

from datetime import timedelta

import pytest

from durable_workflows import client, testing, workflow
from durable_workflows.models import WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)


@workflow("births.leaf", timeout="1 hour", concurrency=5, concurrency_key="name")
def leaf(wf, name: str) -> str:
    wf.sleep("10 minutes")
    return name


@workflow("births.parent", timeout="2 days")
def parent(wf, name: str) -> str:
    child = wf.start_child("births.leaf", name)
    return wf.wait_child(child)


def born_right(instance_id: str, timeout: timedelta, *, queued: bool = True) -> WorkflowInstance:
    instance = WorkflowInstance.objects.get(pk=instance_id)
    assert instance.created_at is not None
    assert instance.deadline_at - instance.created_at == timeout
    if queued:
        assert instance.dispatched_at == instance.created_at
    return instance


def test_a_start_a_batch_an_inline_run_and_a_child_are_born_alike():
    started = client.start("births.leaf", "a")
    batch = client.start_many("births.leaf", [["b"], ["c"]])
    inline = client.run_inline("births.leaf", "d")
    family = client.start("births.parent", "e")
    (child,) = family.refresh().children
    for handle, name in zip((started, *batch), "abc", strict=True):
        assert born_right(handle.instance_id, timedelta(hours=1)).concurrency_key == f'"{name}"'
    assert born_right(inline.instance_id, timedelta(hours=1), queued=False).concurrency_key == '"d"'
    born_right(family.instance_id, timedelta(days=2))
    kid = born_right(child, timedelta(hours=1))
    assert (kid.parent_id, kid.concurrency_key) == (family.instance_id, '"e"')


def test_a_fork_is_born_now_with_a_deadline_of_its_own_and_the_input_as_stored():
    original = client.start("births.leaf", "f")
    client.cancel(original.instance_id)
    fork = client.fork(original.instance_id, new_id="f-again")
    made = born_right(fork.instance_id, timedelta(hours=1), queued=False)
    first = WorkflowInstance.objects.get(pk=original.instance_id)
    assert made.created_at > first.created_at
    assert (made.input, made.concurrency_key, made.forked_from) == (first.input, '"f"', first.pk)


def test_an_instance_made_under_the_virtual_clock_is_born_at_its_time():
    with testing.virtual_clock() as clock:
        clock.advance(timedelta(days=30))
        handle = testing.run("births.parent", "g")
        instance = born_right(handle.instance_id, timedelta(days=2), queued=False)
        assert abs(instance.created_at - clock.now()) < timedelta(days=1)
