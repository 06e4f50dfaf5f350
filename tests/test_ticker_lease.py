"""The lease that makes one process of a cluster its ticker (engine.ticker_lease), in one
process: two leases of one cluster stand for two of its workers."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.test import override_settings

from durable_workflows.engine import clock
from durable_workflows.engine.ticker_lease import ClusterLease, renew_every, term, try_every
from durable_workflows.models import TickerLease
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _expire(cluster: str) -> None:
    TickerLease.objects.filter(name=cluster).update(expires_at=clock.now() - timedelta(seconds=1))


def test_the_first_process_takes_it_and_the_others_do_not():
    first, second = ClusterLease("c1"), ClusterLease("c1")
    assert first.keep() and first.held
    assert not second.keep() and not second.held
    row = TickerLease.objects.get(name="c1")
    assert row.holder == first.holder and row.expires_at > clock.now()
    # The holder renews it; the other goes on finding it held.
    assert first.keep() and not second.keep()
    assert TickerLease.objects.get(name="c1").holder == first.holder


def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it_lost_it():
    first, second = ClusterLease("c2"), ClusterLease("c2")
    first.keep()
    _expire("c2")
    assert second.keep()
    assert TickerLease.objects.get(name="c2").holder == second.holder
    assert not first.keep() and first.holder is None
    assert second.keep()


def test_a_released_lease_is_taken_at_the_next_try():
    first, second = ClusterLease("c3"), ClusterLease("c3")
    first.keep()
    first.release()
    assert not first.held
    row = TickerLease.objects.get(name="c3")
    assert row.holder == ""
    assert second.keep()
    # A release by a process that lost the lease leaves the new holder's alone.
    first.holder = "stale"
    first.release()
    assert TickerLease.objects.get(name="c3").holder == second.holder


def test_each_cluster_name_has_its_own_lease():
    a, b = ClusterLease("ca"), ClusterLease("cb")
    assert a.keep() and b.keep()
    assert TickerLease.objects.filter(name__in=["ca", "cb"]).count() == 2


def test_a_hold_lapses_on_its_own_clock_when_it_cannot_be_renewed(monkeypatch):
    lease = ClusterLease("c4")
    assert lease.keep()
    monkeypatch.setattr(lease, "_renewed_at", lease._renewed_at - term())
    assert not lease.held


@override_settings(DURABLE_WORKFLOWS={"LEASE_SECONDS": 3, "HEARTBEAT_SECONDS": 1})
def test_a_dead_holder_is_replaced_within_lease_seconds():
    # Its last renewal plus the term, then at most one try of another process.
    assert term() + try_every() <= 3
    assert renew_every() < term() / 2


def test_alarms_due_finds_what_a_pass_of_fire_alarms_would_do():
    from durable_workflows import client, fire_alarms
    from durable_workflows.engine.scans import alarms_due
    from durable_workflows.models import Alarm, WorkflowInstance

    assert not alarms_due()
    nap = client.start("tests.nap", "1h")
    assert nap.refresh().state == "paused" and not alarms_due()
    Alarm.objects.filter(instance_id=nap.instance_id).update(fire_at=clock.now() - timedelta(seconds=1))
    assert alarms_due()
    assert fire_alarms() == [nap.instance_id]
    assert nap.refresh().state == "completed" and not alarms_due()

    late = client.start("events.deadline")
    assert late.refresh().state == "paused" and not alarms_due()
    WorkflowInstance.objects.filter(pk=late.instance_id).update(deadline_at=clock.now() - timedelta(seconds=1))
    assert alarms_due()
    assert fire_alarms() == [late.instance_id]
    assert not alarms_due()


def test_alarms_due_finds_a_queued_instance_past_its_deadline():
    from durable_workflows import client
    from durable_workflows.engine.scans import alarms_due
    from durable_workflows.models import WorkflowInstance

    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "tests.test_workers_glue.LosingDispatcher"}):
        handle = client.start("events.deadline")
        assert handle.refresh().state == "queued" and not alarms_due()
        # Its task went out before its deadline, and it has not run since.
        WorkflowInstance.objects.filter(pk=handle.instance_id).update(
            dispatched_at=clock.now() - timedelta(seconds=2), deadline_at=clock.now() - timedelta(seconds=1))
        assert alarms_due()


class CountingEvent(threading.Event):
    """The ticker's stop event, counting the waits of its loop."""

    waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)


def test_a_ticker_whose_renewals_fail_stops_the_work_once_its_term_ran_out_and_does_not_spin():
    from durable_workflows import ticker

    with override_settings(DURABLE_WORKFLOWS={"LEASE_SECONDS": 0.6, "HEARTBEAT_SECONDS": 0.2}):
        thread = ticker.Ticker(alarm_interval=0.05, recovery_interval=0.05, cluster="c5")
        thread._stopping = CountingEvent()
        taken = thread.lease.keep

        def keep() -> bool:
            if thread.lease.holder is None:
                return taken()
            raise DatabaseError("the database went away")

        thread.lease.keep = keep  # type: ignore[method-assign]
        thread.start()
        try:
            wait_until(lambda: thread.errors >= 5, timeout=20, message="failed renewals")
            wait_until(lambda: not thread.holds_lease, timeout=20, message="the hold to lapse")
            ticks, waits, began = thread.ticks, thread._stopping.waits, time.monotonic()
            time.sleep(0.5)  # what the loop does meanwhile: only the renewals, a few a second
            assert thread.ticks == ticks
            assert thread._stopping.waits - waits <= 5 + 20 * (time.monotonic() - began)
        finally:
            thread.stop()
            thread.join(10)
    assert not thread.is_alive()
