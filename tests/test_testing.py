"""durable_workflows.testing (DESIGN §11): run workflows to their end on a virtual clock, in
pytest (the `durable` fixture) and in Django's TestCase."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
from django.test import TestCase
from django.utils import timezone

from durable_workflows import UnknownWorkflow, client, registry, testing
from durable_workflows.engine import clock as engine_clock
from durable_workflows.models import Alarm
from tests.testapp.fault_workflows import RAN

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_a_month_of_sleeps_retries_and_waits_finishes_at_once():
    began = time.monotonic()
    handle = testing.run("testing.month", "m", events={"approve": {"ok": True}})
    elapsed = time.monotonic() - began
    assert handle.state == "completed", handle.error
    assert handle.result() == {"value": "m ok", "payload": {"ok": True}, "days": 30}
    assert RAN["m"] == 3  # two failures an hour apart, then success
    print(f"a month of workflow time took {elapsed:.3f} s")
    assert timezone.now() - handle.instance.created_at < timezone.timedelta(minutes=5)  # the clock is back


@pytest.mark.django_db
def test_event_timeouts_pass_on_the_virtual_clock_too():
    handle = testing.run("testing.month", "t")
    assert handle.result() == {"value": "t ok", "payload": "no answer", "days": 37}


@pytest.mark.django_db
def test_a_wait_nobody_answers_returns_the_instance_paused():
    handle = testing.run("testing.forever")
    assert handle.state == "paused"


@pytest.mark.django_db
def test_children_run_inline_and_get_their_events():
    handle = testing.run("testing.family", events={"wake": [10, 20]})
    assert handle.result() == [10, 21]
    assert [client.get(kid).state for kid in handle.children] == ["completed", "completed"]


@pytest.mark.django_db
def test_a_workflow_deadline_passes_on_the_virtual_clock():
    handle = testing.run("testing.deadline")
    assert handle.state == "failed" and handle.error["type"] == "WorkflowTimeout"


@pytest.mark.django_db
def test_bad_input():
    with pytest.raises(UnknownWorkflow):
        testing.run("no.such.workflow")
    with pytest.raises(TypeError):
        testing.run("testing.month")  # its tag is missing
    with pytest.raises(TypeError, match="events must be a dict"):
        testing.run("testing.forever", events=["never"])


@pytest.mark.django_db
def test_the_durable_fixture(durable):
    handle = durable.run("testing.forever")
    assert handle.state == "paused"
    assert durable.send_event(handle.instance_id, "never", "at last")
    assert handle.refresh().result() == "at last"
    napping = client.start("testing.napper", 4)  # runs inline under the fixture's clock
    assert napping.refresh().state == "paused"
    before = durable.now()
    assert durable.advance("5 days") == [napping.instance_id]
    assert durable.now() - before >= timezone.timedelta(days=5)
    durable.send_event(napping.instance_id, "wake", 1)
    assert napping.refresh().result() == 5


class TestInsideATestCase(TestCase):
    def test_runs_in_the_test_transaction(self):
        handle = testing.run("testing.month", "tc", events={"approve": "yes"})
        self.assertEqual(handle.result()["payload"], "yes")


@pytest.fixture
def shop():
    sys.path.insert(0, str(ROOT / "example_project"))
    import shop.workflows  # noqa: F401  (registers shop.order)

    yield
    sys.path.remove(str(ROOT / "example_project"))
    # The shop's nightly report has a schedule: it must not start in other tests' passes.
    for name in ("shop.order", "shop.region_totals", "shop.nightly_report"):
        registry.unregister(name)
    for module in [m for m in sys.modules if m == "shop" or m.startswith("shop.")]:
        del sys.modules[module]


@pytest.mark.django_db
def test_the_example_order_ships_once_paid(shop):
    handle = testing.run("shop.order", "1002", pack_seconds=0, declines=1,
                         events={"payment confirmed": {"reference": "psp-42"}})
    assert handle.result() == {"order": "1002", "payment": "psp-42", "parcel": "parcel-1002",
                               "receipt": "receipt-1002-2", "pickup": "pickup-parcel-1002"}


@pytest.mark.django_db
def test_the_example_order_is_released_without_a_payment(shop):
    handle = testing.run("shop.order", "1001")
    assert handle.result() == {"order": "1001", "status": "released: payment not confirmed"}


@pytest.mark.django_db
def test_branches_that_sleep_finish_on_the_virtual_clock():
    handle = testing.run("branches.two_sleepers")
    assert handle.result() == [0, 1]


def test_the_virtual_clock_leaves_djangos_clock_alone():
    django_now = timezone.now
    with testing.virtual_clock() as clock:
        assert engine_clock.current() is clock
        clock.advance(timedelta(days=3))
        assert timezone.now is django_now
        assert abs(timezone.now() - datetime.now(dt_timezone.utc)) < timedelta(minutes=1)
        assert abs(engine_clock.now() - timezone.now() - timedelta(days=3)) < timedelta(minutes=1)
        with testing.virtual_clock() as nested:
            assert nested is clock
        assert engine_clock.current() is clock
    assert engine_clock.current() is None
    assert abs(engine_clock.now() - timezone.now()) < timedelta(minutes=1)


class Frozen:
    def now(self) -> datetime:
        return datetime(2030, 1, 1, tzinfo=dt_timezone.utc)


def test_a_source_installed_before_the_virtual_clock_is_its_base_and_comes_back():
    with engine_clock.using(Frozen()) as frozen:
        assert engine_clock.now() == frozen.now()
        with testing.virtual_clock() as clock:
            clock.advance(timedelta(days=1))
            assert engine_clock.now() == frozen.now() + timedelta(days=1)
        assert engine_clock.current() is frozen
        inner = engine_clock.use(None)
        with pytest.raises(RuntimeError, match="out of turn"):
            engine_clock.restore(engine_clock.Token(frozen, None))
        engine_clock.restore(inner)
        assert engine_clock.current() is frozen
    assert engine_clock.current() is None


def _the_clock_a_nested_use_gets() -> testing.VirtualClock:
    with testing.virtual_clock() as clock:
        return clock


def test_a_thread_of_its_own_reads_the_virtual_clock_too():
    with testing.virtual_clock() as clock:
        clock.advance(timedelta(days=3))
        seen: list[timedelta] = []
        thread = threading.Thread(target=lambda: seen.append(engine_clock.now() - timezone.now()))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(1) as pool:
            shared = pool.submit(_the_clock_a_nested_use_gets).result()
    assert shared is clock
    assert abs(seen[0] - timedelta(days=3)) < timedelta(minutes=1)


@pytest.mark.django_db
@pytest.mark.parametrize("workflow", ["testing.parallel_sleepers", "testing.async_parallel_sleepers"])
def test_sleeps_in_parallel_branches_end_at_the_virtual_time_in_the_branch_threads(workflow):
    with testing.virtual_clock() as clock:
        handle = testing.run(workflow)
    assert handle.state == "completed", handle.error
    result = handle.result()
    assert result["days"] == 5
    # Each branch's step ran in a thread of its own once its sleep was over, by the virtual
    # clock, while Django's clock there read the real time.
    assert [nap["days"] for nap in result["naps"]] == [pytest.approx(2, abs=0.01), pytest.approx(5, abs=0.01)]
    assert all(nap["thread"] != threading.current_thread().name for nap in result["naps"]), result
    sleeps = sorted((r for r in handle.steps if r.kind == "sleep"), key=lambda r: r.wake_at)
    assert [round((r.wake_at - r.started_at).total_seconds()) for r in sleeps] == [2 * 86400, 5 * 86400]
    assert all(r.finished_at >= r.wake_at for r in sleeps)
    assert abs(clock.skipped - timedelta(days=5)) < timedelta(minutes=1)


@pytest.mark.django_db
def test_rows_made_under_the_virtual_clock_are_stamped_by_it(durable):
    durable.advance("10 days")
    handle = client.start("testing.deadline")  # a 2-day timeout, counted from its creation
    instance = handle.refresh().instance
    assert abs(instance.created_at - durable.now()) < timedelta(minutes=1)
    assert abs(instance.updated_at - durable.now()) < timedelta(minutes=1)
    assert instance.deadline_at - instance.created_at == timedelta(days=2)
    assert handle.state == "paused"  # not timed out at once: the deadline is 2 days ahead
    durable.advance("2 days")
    assert handle.refresh().state == "failed" and handle.error["type"] == "WorkflowTimeout"


@pytest.mark.django_db
def test_the_admin_and_the_command_tell_times_by_the_virtual_clock(durable):
    from durable_workflows.admin.display import relative
    from durable_workflows.management.commands.durable_workflows import resumes

    durable.advance("10 days")
    napping = client.start("testing.napper", 0)  # sleeps for a day
    fire_at = Alarm.objects.get(instance_id=napping.instance_id).fire_at
    assert relative(fire_at) == "in 1 d"
    assert resumes(fire_at).startswith("in 1 d ")
