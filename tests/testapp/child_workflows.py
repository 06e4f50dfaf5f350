"""Workflows for the child-workflow tests."""

from __future__ import annotations

from durable_workflows import ChildWorkflowFailed, UnknownWorkflow, WorkflowCancelled, workflow

from .fault_workflows import RAN, note


@workflow("children.square")
def square(wf, n: int) -> int:
    return wf.step("Square", note, f"square-{n}", n * n)


@workflow("children.fan")
def fan(wf, numbers: list) -> list:
    kids = [wf.start_child("children.square", n) for n in numbers]
    return [wf.wait_child(kid) for kid in kids]


@workflow("children.napper")
def napper(wf, n: int) -> int:
    wf.sleep("1h")
    return wf.step("Woke", note, f"napper-{n}", n)


@workflow("children.wait_nappers")
def wait_nappers(wf, count: int) -> list:
    kids = [wf.start_child("children.napper", n) for n in range(count)]
    return [wf.wait_child(kid) for kid in kids]


@workflow("children.start_step_wait")
def start_step_wait(wf) -> int:
    kid = wf.start_child("children.napper", 0)
    wf.step("Between", note, "start-step-wait")  # the child is inserted before this step runs
    return wf.wait_child(kid)


@workflow("children.start_then_sleep")
def start_then_sleep(wf) -> str:
    kid = wf.start_child("children.square", 3)
    wf.sleep("1h")
    return f"{kid.instance_id}={wf.wait_child(kid)}"


def boom():
    raise LookupError("no such sku")


@workflow("children.failing")
def failing(wf) -> None:
    wf.step("Boom", boom)


@workflow("children.catches")
def catches(wf, which: str) -> dict:
    kid = wf.start_child("children.failing") if which == "failing" else wf.start_child("children.napper", 1)
    try:
        return {"result": wf.wait_child(kid)}
    except ChildWorkflowFailed as error:
        return {"failed": error.child_id, "type": error.error["type"], "message": str(error)}
    except WorkflowCancelled as error:
        return {"cancelled": str(error)}


@workflow("children.grandparent")
def grandparent(wf) -> object:
    return wf.run_child("children.wait_nappers", 2)


@workflow("children.bad")
def bad(wf, how: str) -> str:
    try:
        if how == "unknown":
            wf.start_child("children.nope")
        elif how == "arguments":
            wf.start_child("children.square", 1, 2, 3)
        else:
            wf.wait_child("not-a-child")
    except (UnknownWorkflow, TypeError, ValueError) as error:
        RAN[f"bad-{how}"] += 1
        return f"{type(error).__name__}: {error}"
    return "no error"


@workflow("children.leaves_running")
def leaves_running(wf) -> str:
    return wf.start_child("children.napper", 7).instance_id


@workflow("children.deadline", timeout="1h")
def with_deadline(wf) -> list:
    kids = [wf.start_child("children.napper", n) for n in range(2)]
    return [wf.wait_child(kid) for kid in kids]


@workflow("children.async")
async def async_parent(wf, n: int) -> int:
    kid = await wf.start_child("children.square", n)
    return await wf.wait_child(kid) + await wf.run_child("children.square", n + 1)


@workflow("children.named")
def named(wf, child_id: str) -> int:
    return wf.run_child("children.square", 5, instance_id=child_id)


@workflow("children.start_then_fail")
def start_then_fail(wf) -> None:
    wf.start_child("children.square", 5)
    raise ValueError("the parent fails after starting a child")
