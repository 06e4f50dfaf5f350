"""The one database alias the library uses for every query, transaction and raw statement.

`DURABLE_WORKFLOWS["DATABASE"]` (default "default"). A project that keeps our tables on
another database names it here, and then a run's writes, the transactions that make them
atomic, its row locks and its raw statements all go to that one connection: a router alone
could send the ORM's queries there but not `transaction.atomic()` or a raw cursor, and a
write and its fence would then commit on different databases. The models' managers use the
alias too (see `models.AliasManager`), so code that goes through them needs nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .conf import settings


def alias() -> str:
    return str(settings.DATABASE)


def connection() -> BaseDatabaseWrapper:
    """The connection of this thread to our database."""
    return connections[alias()]


def atomic(savepoint: bool = True, durable: bool = False) -> Any:
    """`transaction.atomic()` on our database."""
    return transaction.atomic(using=alias(), savepoint=savepoint, durable=durable)


def on_commit(fn: Callable[[], Any]) -> None:
    """`transaction.on_commit()` on our database."""
    transaction.on_commit(fn, using=alias())


def set_rollback(rollback: bool) -> None:
    transaction.set_rollback(rollback, using=alias())


def routed_elsewhere() -> str | None:
    """The database the project's routers send our tables to, when they send them somewhere
    else than the DATABASE setting says (a mistake: our queries go to DATABASE)."""
    from django.db import router

    from .models import StepRecord

    for each in router.routers:
        chooser = getattr(each, "db_for_write", None)
        chosen = chooser(StepRecord) if chooser is not None else None
        if chosen:
            return None if chosen == alias() else str(chosen)
    return None
