"""Patches: `wf.patched(patch_id)` and `wf.deprecate_patch(patch_id)`, so that new code can
change a workflow without breaking the instances that already ran past the change.

A run that reaches `wf.patched("x")` where its history has nothing yet is running the new
code: it records a marker ("patch" record named "x") at that position and gets True, and so
does every replay of it. A history that already has something else at that position ran
there under the old code: it gets False, and the call takes no position, so the old code's
records line up as before. Once no instance from before the patch is left, the `if` can go;
`wf.deprecate_patch("x")` in its place takes the marker's position in the histories that
recorded it and none in new ones.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..models import StepKind, StepState
from .cursor import Cursor
from .names import checked
from .waits import new_wait

if TYPE_CHECKING:
    from .context import WorkflowContext
    from .lanes import Lane


def check_id(patch_id: Any) -> str:
    return checked(patch_id, "a patch id")


def _once(wf: WorkflowContext, patch_id: str) -> None:
    if patch_id in wf._patches:
        raise ValueError(f"patch {patch_id!r} was already asked for in this run; each patch id "
                         f"marks one place in the workflow, so give each place an id of its own")
    wf._patches.add(patch_id)


def patched_at(wf: WorkflowContext, lane: Lane, patch_id: str) -> bool:
    _once(wf, patch_id)
    record, parallel = Cursor.ahead(wf, lane)
    if record is None and parallel:
        return False  # the history ran a wf.parallel here: the code before the patch
    if record is None:
        # new_wait stages the marker: a replay check stops here, as this is new work.
        cursor = Cursor(wf, lane.take())
        marker = new_wait(cursor, patch_id, StepKind.PATCH, state=StepState.COMPLETED)
        marker.finished_at = marker.started_at
        cursor.keep(marker)
        return True
    if record.kind == StepKind.PATCH and record.name == patch_id:
        lane.take()
        return True
    return False


def deprecated_at(wf: WorkflowContext, lane: Lane, patch_id: str) -> None:
    _once(wf, patch_id)
    record, _ = Cursor.ahead(wf, lane)
    if record is not None and record.kind == StepKind.PATCH and record.name == patch_id:
        lane.take()


class PatchFlag:
    """What `wf.patched` returns: a bool that an async workflow may also await."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __bool__(self) -> bool:
        return self.value

    def __eq__(self, other: object) -> bool:
        return self.value == other

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return repr(self.value)

    def __await__(self) -> Generator[None, None, bool]:
        return self.value
        yield  # pragma: no cover - makes this a generator
