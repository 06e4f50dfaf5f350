"""Workflows for the patch and replay-check tests: one workflow whose code the tests change
between runs, as a deploy would."""

from __future__ import annotations

import os

from durable_workflows import workflow

from .branch_workflows import count

#: The code "installed now": 1, 2 (patched), 3 (patch deprecated) or "careless" (a step
#: inserted without a patch). Set by the tests.
VERSION: dict[str, object] = {"v": os.environ.get("DW_PATCH_VERSION", 1)}
if VERSION["v"] in ("2", "3"):
    VERSION["v"] = int(VERSION["v"])  # type: ignore[arg-type]


@workflow("patches.order")
def order(wf) -> str:
    wf.step("A", count, "p-A")
    v = VERSION["v"]
    if v == 2:
        if wf.patched("add-x"):
            wf.step("X", count, "p-X")
    elif v == 3:
        wf.deprecate_patch("add-x")
        wf.step("X", count, "p-X")
    elif v == "careless":
        wf.step("X", count, "p-X")
    wf.sleep("1h")
    return wf.step("B", count, "p-B")


@workflow("patches.async_order")
async def async_order(wf) -> str:
    await wf.step("A", count, "pa-A")
    if VERSION["v"] == 2 and await wf.patched("add-x"):
        await wf.step("X", count, "pa-X")
    await wf.sleep("1h")
    return await wf.step("B", count, "pa-B")


@workflow("patches.branches")
def in_branches(wf) -> list:
    def second():
        wf.step("first", count, "pb-first")
        if VERSION["v"] == 2 and wf.patched("add-x"):
            wf.step("X", count, "pb-X")
        wf.sleep("1h")
        return wf.step("last", count, "pb-last")

    return wf.parallel(lambda: wf.step("other", count, "pb-other"), second)


@workflow("patches.bad")
def bad(wf, how: str) -> str:
    try:
        if how == "empty":
            wf.patched("")
        elif how == "type":
            wf.patched(7)
        else:
            wf.patched("twice")
            wf.patched("twice")
    except ValueError as error:
        return str(error)
    return "no error"


#: Whether `repair.flow`'s buggy step is fixed. Set by the tests.
FIXED = {"yes": False}


def buggy(order_id: str) -> str:
    count("r-buggy")
    if not FIXED["yes"]:
        raise ValueError(f"bug while shipping {order_id}")
    return f"shipped {order_id}"


@workflow("repair.flow")
def repair_flow(wf, order_id: str) -> str:
    charged = wf.step("Charge", count, "r-charge", f"charged {order_id}")
    child = wf.run_child("children.square", 6)
    both = wf.parallel(lambda: wf.step("Left", count, "r-left"), lambda: wf.step("Right", count, "r-right"))
    shipped = wf.step("Ship", buggy, order_id)
    return f"{charged}, {child}, {both}, {shipped}"
