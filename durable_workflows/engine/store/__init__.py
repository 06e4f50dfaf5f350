"""Where the engine keeps instances, records and events (base.py says what a store does).

`current()` is the store for the database the engine uses now: `PostgresStore` on PostgreSQL
through psycopg 3 (its single statements bind on the server and are prepared), `OrmStore`
anywhere else, psycopg2 included, which is as correct with a round trip more per write.
`use()` puts another in its place for a block, as the replay core's unit tests do with a
`MemoryStore`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from ... import database
from ...conf import settings
from .base import Claimed, Store, Write
from .memory import MemoryStore
from .orm import REPLAY_DEFERRED, OrmStore
from .postgres import PostgresStore

_OVERRIDE: contextvars.ContextVar[Store | None] = contextvars.ContextVar("durable_workflows_store", default=None)
_ORM = OrmStore()
_POSTGRES = PostgresStore()


def current() -> Store:
    override = _OVERRIDE.get()
    if override is not None:
        return override
    return _POSTGRES if single_statements() else _ORM


def single_statements() -> bool:
    """Whether the PostgreSQL single statements apply to the engine's database now."""
    return database.connection().vendor == "postgresql" and settings.SINGLE_STATEMENT_WRITES and _psycopg3()


@lru_cache(maxsize=1)
def _psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3


@contextmanager
def use(store: Store) -> Iterator[Store]:
    """Make `store` the engine's for the block (in this context and the threads it starts
    through the engine)."""
    token = _OVERRIDE.set(store)
    try:
        yield store
    finally:
        _OVERRIDE.reset(token)


__all__ = ["REPLAY_DEFERRED", "Claimed", "MemoryStore", "OrmStore", "PostgresStore", "Store", "Write", "current",
           "single_statements", "use"]
