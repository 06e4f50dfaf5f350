"""Retention: finished instances past their workflow's `purge_after` (or PURGE_AFTER) are
deleted with every row of theirs; nothing else is."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from durable_workflows import client, purge_expired, workflow
from durable_workflows.models import Alarm, Event, InboxMessage, StepRecord, WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)


def _finished_days_ago(handle, days: float) -> str:
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(
        finished_at=timezone.now() - timedelta(days=days))
    return handle.instance_id


def _rows_of(pk: str) -> dict[str, int]:
    return {model.__name__: model.objects.filter(instance_id=pk).count()
            for model in (StepRecord, Event, Alarm, InboxMessage)}


def test_expired_instances_go_with_every_row_and_nothing_else_does():
    old = _finished_days_ago(client.start("engine.kept_a_day", 1), 2)
    recent = _finished_days_ago(client.start("engine.kept_a_day", 2), 0.5)
    waiting = client.start("tests.nap")  # Paused, with an alarm: not finished, never purged
    WorkflowInstance.objects.filter(pk=waiting.instance_id).update(created_at=timezone.now() - timedelta(days=9))
    client.send_event(waiting.instance_id, "unused", {"x": 1})
    other = _finished_days_ago(client.start("tests.greet", "x"), 30)  # no purge_after, no PURGE_AFTER
    assert _rows_of(old)["StepRecord"] == 1 and _rows_of(old)["Event"] > 0

    assert purge_expired() == 1
    assert not WorkflowInstance.objects.filter(pk=old).exists()
    assert _rows_of(old) == {"StepRecord": 0, "Event": 0, "Alarm": 0, "InboxMessage": 0}
    assert set(WorkflowInstance.objects.values_list("pk", flat=True)) >= {recent, waiting.instance_id, other}
    assert _rows_of(waiting.instance_id)["Alarm"] == 1 and _rows_of(waiting.instance_id)["InboxMessage"] == 1
    assert purge_expired() == 0

    with override_settings(DURABLE_WORKFLOWS={"PURGE_AFTER": "7 days"}):
        assert purge_expired() == 1  # the greeting, 30 days old; the workflow's own day still rules the rest
    assert not WorkflowInstance.objects.filter(pk=other).exists()
    assert WorkflowInstance.objects.filter(pk=recent).exists()


def test_a_child_outlives_its_purged_parent():
    parent = _finished_days_ago(client.start("engine.kept_a_day", 3), 2)
    child = client.start("tests.greet", "child")
    WorkflowInstance.objects.filter(pk=child.instance_id).update(parent_id=parent)
    assert purge_expired() == 1
    assert WorkflowInstance.objects.get(pk=child.instance_id).parent_id is None


def test_purge_goes_in_batches_and_stops_at_its_limit():
    ids = [_finished_days_ago(client.start("engine.kept_a_day", n), 2) for n in range(5)]
    assert purge_expired(batch_size=2, limit=3) == 3
    assert WorkflowInstance.objects.filter(pk__in=ids).count() == 2
    assert purge_expired(batch_size=2) == 2


@pytest.mark.parametrize("value, says", [
    ("soon", "workflow 'engine.bad_keep': invalid purge_after 'soon'"),
    (-5, "must not be negative"),
])
def test_a_bad_purge_after_is_refused_at_import(value, says):
    with pytest.raises(ValueError, match=says):
        @workflow("engine.bad_keep", purge_after=value)
        def bad_keep(wf):
            return None


@workflow("retention.short_lived", purge_after="1s")
def short_lived(wf, value):
    return value * 2


@workflow("retention.collector")
def collector(wf, value):
    child = wf.start_child("retention.short_lived", value)
    wf.wait_for_event("collect")
    return wf.wait_child(child)


def test_a_finished_child_stays_until_its_unfinished_parent_collects_it():
    parent = client.start("retention.collector", 21)
    (child_id,) = parent.refresh().children
    assert client.get(child_id).state == "completed"
    WorkflowInstance.objects.filter(pk=child_id).update(finished_at=timezone.now() - timedelta(days=1))
    assert purge_expired() == 0
    assert WorkflowInstance.objects.filter(pk=child_id).exists()
    client.send_event(parent.instance_id, "collect")
    assert parent.refresh().result() == 42
    assert purge_expired() == 1  # collected, and its parent finished: now it may go
    assert not WorkflowInstance.objects.filter(pk=child_id).exists()


@workflow("retention.waits_forever", purge_after="1s")
def waits_forever(wf):
    return wf.wait_for_event("never")


@workflow("retention.failing_parent", purge_after="1s")
def failing_parent(wf):
    wf.start_child("retention.waits_forever")
    wf.step("Fail", _fail)


def _fail():
    raise RuntimeError("the parent fails")


def test_a_parent_whose_children_are_still_being_cancelled_stays():
    parent = client.start("retention.failing_parent")
    assert parent.refresh().state == "failed"
    (child_id,) = parent.children
    # The child was mid-step in another worker when its parent failed: it is cancelled at
    # its next step boundary, and until then its parent is the link it reports to.
    WorkflowInstance.objects.filter(pk=child_id).update(state="running", cancel_requested=True, finished_at=None)
    WorkflowInstance.objects.filter(pk=parent.instance_id).update(finished_at=timezone.now() - timedelta(days=1))
    assert purge_expired() == 0
    WorkflowInstance.objects.filter(pk=child_id).update(state="cancelled", finished_at=timezone.now() - timedelta(days=1))
    assert purge_expired() == 2


def test_a_parent_that_has_not_told_its_family_stays():
    parent = client.start("retention.failing_parent")
    WorkflowInstance.objects.filter(pk=parent.instance_id).update(
        family_pending=True, finished_at=timezone.now() - timedelta(days=1))
    WorkflowInstance.objects.filter(parent_id=parent.instance_id).update(
        finished_at=timezone.now() - timedelta(days=1))
    assert purge_expired() == 1  # the child (finished, its parent too); the parent waits for recover()
    assert WorkflowInstance.objects.filter(pk=parent.instance_id).exists()
