"""Stand-ins for the outside world a shop talks to: an order store, a warehouse, a payment
gateway, a mailer. Each prints what it does, so the worker's log shows every real call."""

from __future__ import annotations

import time
from decimal import Decimal

ORDERS = {
    "1001": {"customer": "Ada", "items": ["tea", "scones"], "total": Decimal("18.50")},
    "1002": {"customer": "Grace", "items": ["compiler manual"], "total": Decimal("42.00")},
    "1003": {"customer": "Alan", "items": ["bombe kit", "rotor set", "manual"], "total": Decimal("99.90")},
}


class CardDeclined(ConnectionError):
    """The gateway said no this time; asking again later may work."""


def _log(message: str) -> None:
    print(f"[shop] {message}", flush=True)


def fetch_order(order_id: str) -> dict:
    _log(f"fetching order {order_id}")
    order = ORDERS.get(order_id, {"customer": "Guest", "items": ["gift card"], "total": Decimal("10.00")})
    return {"id": order_id, **order}


def pack_parcel(order: dict, seconds: float) -> str:
    _log(f"packing order {order['id']} ({len(order['items'])} items, {seconds} s)")
    time.sleep(seconds)
    return f"parcel-{order['id']}"


def charge_card(order: dict, attempt: int, declines: int) -> str:
    """Declines the first `declines` attempts, as a flaky gateway would."""
    _log(f"charging {order['total']} EUR for order {order['id']} (attempt {attempt})")
    if attempt <= declines:
        raise CardDeclined(f"gateway timeout while charging order {order['id']}")
    return f"receipt-{order['id']}-{attempt}"


def book_courier(parcel: str) -> str:
    _log(f"booking a courier for {parcel}")
    return f"pickup-{parcel}"


def release_order(order_id: str) -> str:
    _log(f"releasing order {order_id}: its payment was never confirmed")
    return "released"


REGIONS = {"north": ["1001"], "south": ["1002"], "west": ["1003"]}


def list_regions() -> list[str]:
    return sorted(REGIONS)


def collect_orders(day: str, region: str) -> dict:
    _log(f"collecting the orders of {day} in the {region}")
    orders = [ORDERS[number] for number in REGIONS[region] if number in ORDERS]
    return {"region": region, "orders": len(orders), "revenue": sum(o["total"] for o in orders)}


def build_report(day: str, totals: list[dict]) -> dict:
    _log(f"building the report for {day} from {len(totals)} regions")
    return {"day": day, "orders": sum(t["orders"] for t in totals),
            "revenue": sum(t["revenue"] for t in totals), "regions": totals, "title": f"Sales on {day}"}


def email_report(report: dict) -> str:
    _log(f"e-mailing {report['title']!r}")
    return "sent"
