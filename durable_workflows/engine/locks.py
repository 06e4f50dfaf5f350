"""Locks on a name, held until the transaction ends: what concurrency and rate limits count under."""

from __future__ import annotations

import hashlib

from .. import database
from ..models import WorkflowInstance


def lock_txn(*parts: str) -> None:
    """Serialize, until the transaction ends, everything done under the same `parts`."""
    connection = database.connection()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            digest = hashlib.sha256("\x1f".join(("durable_workflows", *parts)).encode()).digest()
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)])
        else:
            # A write that changes nothing still takes SQLite's database lock, which every
            # other writer then waits for, for the rest of this transaction.
            cursor.execute(f"UPDATE {WorkflowInstance._meta.db_table} SET epoch = epoch WHERE 1 = 0")
