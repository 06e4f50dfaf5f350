"""durable_workflows.testing (DESIGN §11): run workflows to their end on a virtual clock, in
pytest (the `durable` fixture) and in Django's TestCase."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from django.test import TestCase
from django.utils import timezone

from durable_workflows import UnknownWorkflow, client, registry, testing
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
