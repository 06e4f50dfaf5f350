"""A run that takes many queued events: queries linear in them, each of a bounded size, and
the inbox's order and rules as for one event."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from durable_workflows import send_event, workflow
from durable_workflows.engine import execute
from durable_workflows.models import InboxMessage
from tests.helpers import queued

pytestmark = pytest.mark.django_db(transaction=True)


@workflow("events.drain")
def drain(wf, count: int):
    return [wf.wait_for_event("item") for _ in range(count)]


def send_more(instance_id: str, items: list[int]) -> None:
    for item in items:
        send_event(instance_id, "item", item)


@workflow("events.drain_and_send")
def drain_and_send(wf, count: int, more: list[int]):
    taken = [wf.wait_for_event("item") for _ in range(count)]
    wf.step("Send more", send_more, wf.instance_id, more)
    taken += [wf.wait_for_event("item") for _ in more]
    wf.wait_for_event("done")
    return taken


def drained(count: int) -> list[str]:
    """The statements of one run that takes `count` queued events."""
    handle = queued("events.drain", count)
    for item in range(count):
        send_event(handle.instance_id, "item", item)
    send_event(handle.instance_id, "other", "not taken")
    with CaptureQueriesContext(connection) as captured:
        assert execute(handle.instance_id, "fresh", handle.instance.epoch) == "completed"
    assert handle.refresh().result() == list(range(count))
    taken = InboxMessage.objects.filter(instance_id=handle.instance_id, name="item").order_by("id")
    assert [(m.payload, m.taken_position) for m in taken] == [(str(i), i) for i in range(count)]
    assert InboxMessage.objects.get(instance_id=handle.instance_id, name="other").taken_at is None
    return [query["sql"] for query in captured.captured_queries]


def test_taking_queued_events_costs_linear_queries_of_bounded_size():
    n = 250
    once, twice = drained(n), drained(2 * n)
    # Far fewer than one query a wait: the inbox is read a page at a time.
    assert len(once) <= n // 10 + 20 and len(twice) <= 2 * n // 10 + 20, (len(once), len(twice))
    # No statement grows with the number of events taken (ids grow a digit, no more).
    longest_once, longest_twice = max(map(len, once)), max(map(len, twice))
    assert longest_twice <= longest_once * 1.2, (longest_once, longest_twice)


def test_events_sent_while_the_run_runs_are_taken_after_the_queued_ones():
    handle = queued("events.drain_and_send", 20, [100, 101])
    send_more(handle.instance_id, list(range(20)))
    assert execute(handle.instance_id, "fresh", handle.instance.epoch) == "paused"
    send_event(handle.instance_id, "item", "left for no wait")
    # The resume replays the waits: the same payloads, whatever the inbox holds now.
    send_event(handle.instance_id, "done")
    assert handle.refresh().result() == [*range(20), 100, 101]
    assert InboxMessage.objects.get(instance_id=handle.instance_id, taken_at__isnull=True).payload == \
        '"left for no wait"'
