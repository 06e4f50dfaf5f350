"""Fault injection through Django's own instrumentation hook, `connection.execute_wrapper`.

Every statement the engine sends goes through the connection's execute wrappers (its
PostgreSQL single-statement writes included), so a wrapper can make any one of them fail as
the database would: before it runs, with the error a lock timeout or a dropped connection
raises.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import OperationalError
from django.db.backends.signals import connection_created

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
ANY = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)


class FailNthWrite:
    """Fails the `n`th write statement (INSERT, UPDATE, DELETE, or a data-modifying WITH)
    it sees, once; with `n=None` it only counts them; with `every=True`, fails them all.
    With `touching`, only writes whose text contains it count (a table name); with
    `reads`, reads count too."""

    def __init__(self, n: int | None, message: str = "injected fault: canceling statement due to lock timeout",
                 every: bool = False, touching: str = "", reads: bool = False):
        self.n = n
        self.pattern = ANY if reads else WRITE
        self.every = every
        self.touching = touching.lower()
        self.message = message
        self.writes = 0
        self.failed_sql: str | None = None

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if self.pattern.match(sql) and self.touching in sql.lower():
            self.writes += 1
            if self.every or self.writes == self.n:
                self.failed_sql = sql
                raise OperationalError(self.message)
        return execute(sql, params, many, context)


@contextmanager
def failing_in_thread(thread_name: str, wrapper: Any) -> Iterator[None]:
    """Install `wrapper` on every connection opened by the thread called `thread_name` (the
    heartbeat opens one per beat)."""

    installed: list[Any] = []

    def install(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == thread_name and wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)
            installed.append(connection)

    connection_created.connect(install, weak=False)
    try:
        yield
    finally:
        connection_created.disconnect(install)
        # The thread keeps its connection object (and its wrappers) across reconnects.
        for connection in installed:
            if wrapper in connection.execute_wrappers:
                connection.execute_wrappers.remove(wrapper)

