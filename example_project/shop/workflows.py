"""The demo's workflows, found by durable_workflows like `admin.py` is found by the admin."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from durable_workflows import EventTimeout, RetryPolicy, workflow

from . import services


@workflow("shop.order", timeout="7 days")
def order_workflow(wf, order_id: str, pack_seconds: float = 0.5, declines: int = 0) -> dict:
    """Fetch an order, wait for the payment provider to confirm it, wait for the warehouse,
    pack it, then capture the payment (with retries) while booking the courier."""
    order = wf.step("Fetch order", services.fetch_order, order_id)
    # The provider's webhook sends this event (with its delivery id as event_id, so that a
    # redelivered webhook is ignored). No confirmation within the hour: the order is released.
    try:
        payment = wf.wait_for_event("payment confirmed", timeout="1 hour")
    except EventTimeout:
        wf.step("Release order", services.release_order, order_id)
        return {"order": order_id, "status": "released: payment not confirmed"}
    # In a real shop this would be hours; the demo keeps it short.
    wf.sleep("2s", name="Wait for the warehouse")
    # A deadline makes each attempt durable: a worker that dies mid-step leaves a record
    # saying so, and the next worker runs the step again.
    parcel = wf.step("Pack parcel", services.pack_parcel, order, pack_seconds, timeout="30s")
    # Two branches at once: the card is charged (with retries: a decline waits durably and
    # tries again) while the courier is booked. Each branch has positions of its own.
    receipt, pickup = wf.parallel(
        lambda: wf.step(
            "Charge card",
            lambda: services.charge_card(order, attempt=wf.attempt, declines=declines),
            retry=RetryPolicy(max_attempts=4, backoff="exponential", initial_delay="1s", jitter=False),
        ),
        lambda: wf.step("Book courier", services.book_courier, parcel),
    )
    return {"order": order_id, "payment": payment["reference"], "parcel": parcel, "receipt": receipt,
            "pickup": pickup}


def next_run(now: datetime, at: time) -> datetime:
    """The next moment the clock shows `at`, after `now`."""
    candidate = datetime.combine(now.date(), at, tzinfo=now.tzinfo)
    return candidate if candidate > now else candidate + timedelta(days=1)


@workflow("shop.region_totals")
def region_totals(wf, day: str, region: str) -> dict:
    """One region's sales: a child of the nightly report, run by whichever worker is free."""
    return wf.step("Collect orders", services.collect_orders, day, region)


@workflow("shop.nightly_report", schedule="0 2 * * *")
def nightly_report(wf, day: str | None = None) -> dict:
    """The day's sales: one child workflow per region (fan out, fan in), then the report is
    built and e-mailed. The schedule starts it at 02:00 for the day before. Started by hand
    for a day (as the demo does), it collects now and sends at 02:00, when nobody is shopping."""
    by_hand = day is not None
    if day is None:
        day = (wf.now() - timedelta(days=1)).date().isoformat()
    regions = wf.step("List regions", services.list_regions)
    children = [wf.start_child("shop.region_totals", day, region) for region in regions]
    totals = [wf.wait_child(child) for child in children]
    if by_hand:
        wf.sleep_until(next_run(wf.now(), time(2, 0)), name="Wait for 02:00")
    report = wf.step("Build report", services.build_report, day, totals)
    wf.step("E-mail report", services.email_report, report)
    return report
