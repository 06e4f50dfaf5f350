"""Workflows the admin and browser tests show: a failure with a traceback, and a step that
blocks until released, to leave an instance Running for as long as a test needs."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from durable_workflows import RetryPolicy, workflow

GATE = threading.Event()
ENTERED: Counter[str] = Counter()


class NoDispatch:
    """Loses every task, so that a test decides when and where an instance runs."""

    synchronous = False

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        return None


def decline_card(order: dict) -> None:
    raise ValueError(f"card declined for order {order['id']}")


@workflow("admin.charge")
def charge(wf, order_id: str, amount: int = 10) -> dict:
    order = wf.step("Fetch order", lambda: {"id": order_id, "amount": amount})
    wf.step("Charge card", decline_card, order)
    return order


def _wait_at_gate_on_first_entry() -> str:
    ENTERED["gate"] += 1
    if ENTERED["gate"] == 1:
        GATE.wait(30)
    return "through"


@workflow("admin.gated")
def gated(wf) -> str:
    wf.step("Before", lambda: "ready")
    return wf.step("Gate", _wait_at_gate_on_first_entry, timeout="60s")


def fetch_order(order_id: str, amount: str) -> dict:
    return {"id": order_id, "amount": amount, "currency": "EUR", "lines": 3}


def reserve_stock(order: dict) -> dict:
    return {"reserved": order["lines"], "warehouse": "Lyon"}


def charge_card(order: dict, card_ok: bool) -> str:
    if not card_ok:
        raise ValueError(f"card declined for order {order['id']}")
    return f"ch_{order['id'].lower()}"


@workflow("orders.fulfil")
def fulfil(wf, order_id: str, amount: str = "19.90", wait_seconds: float = 11550,
           card_ok: bool = True) -> dict:
    """An order as the admin screenshots show it: two steps, a long wait, a charge."""
    order = wf.step("Fetch order", fetch_order, order_id, amount)
    wf.step("Reserve stock", reserve_stock, order)
    wf.sleep(timedelta(seconds=wait_seconds), name="Wait for the warehouse")
    receipt = wf.step("Charge card", charge_card, order, card_ok, retry=RetryPolicy(max_attempts=1))
    return {"order": order_id, "receipt": receipt}
