"""Workflows for the atomic-step tests."""

from __future__ import annotations

import os
import threading

from durable_workflows import RetryPolicy, workflow

from .fault_workflows import RAN

#: Set by a test to hold an atomic step after its write, until released.
HOLD: dict[str, threading.Event] = {}


def book(key: str, amount: int, fail_first: bool = False) -> int:
    from .models import Ledger

    RAN[key] += 1
    Ledger.objects.create(key=key, amount=amount)
    if fail_first and RAN[key] == 1:
        raise ConnectionError("the first attempt fails after its write")
    if key in HOLD:
        HOLD[key].wait(30)
    if os.environ.get("DW_EXIT_IN_STEP") == key:
        os._exit(3)  # the process dies inside the step, its transaction open
    return Ledger.objects.filter(key=key).count()


@workflow("atomic.book")
def book_flow(wf, key: str, fail_first: bool = False) -> int:
    policy = RetryPolicy(max_attempts=3, initial_delay=0, jitter=False)
    return wf.step("Book", book, key, 10, fail_first, atomic=True, retry=policy)


def book_on(alias: str, key: str, fail_first: bool) -> int:
    from .models import Ledger

    RAN[key] += 1
    Ledger.objects.using(alias).create(key=key, amount=1)
    if fail_first and RAN[key] == 1:
        raise ConnectionError("the first attempt fails after its write")
    return Ledger.objects.using(alias).filter(key=key).count()


@workflow("atomic.book_on")
def book_on_flow(wf, alias: str, key: str) -> int:
    policy = RetryPolicy(max_attempts=2, initial_delay=0, jitter=False)
    return wf.step("Book", book_on, alias, key, True, atomic=True, retry=policy)


@workflow("atomic.async_book")
async def async_book_flow(wf, key: str) -> int:
    return await wf.step("Book", book, key, 5, True, atomic=True,
                         retry=RetryPolicy(max_attempts=2, initial_delay=0, jitter=False))


@workflow("atomic.branches")
def in_branches(wf, key: str) -> list:
    return wf.parallel(lambda: wf.step("A", book, f"{key}-a", 1, atomic=True),
                       lambda: wf.step("B", book, f"{key}-b", 2, atomic=True))


@workflow("atomic.bad")
def bad(wf, how: str) -> str:
    async def coroutine():
        return 1

    try:
        if how == "timeout":
            wf.step("T", book, "x", 1, atomic=True, timeout="1s")
        else:
            wf.step("C", coroutine, atomic=True)
    except (ValueError, TypeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


@workflow("atomic.book_plain")
def book_plain(wf, key: str) -> int:
    return wf.step("Book", book, key, 10, atomic=True)
