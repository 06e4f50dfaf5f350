"""The `wf` object a workflow function receives, and the rules all its primitives share.

A workflow runs from the top on every run. Each call to a primitive takes the next position
of its lane (lanes.py: the function's own, or a parallel branch's); a position with a
finished record returns the recorded outcome, a new one does the work and records it
(steps.py, waits.py). Once a lane has stopped at a wait, every further primitive in it
raises the same signal again, so code that runs while the function unwinds (a `finally:`)
does nothing; a lost lease or a database fault stops every lane.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Generator
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from asgiref.sync import sync_to_async
from django.utils import timezone

from ..durations import parse_duration
from ..exceptions import (
    LeaseLost,
    NonDeterminismError,
    SerializationError,
    StepScopeError,
    StoreFault,
    Suspend,
)
from ..models import StepKind, StepRecord
from ..retry import RetryPolicy
from ..text import refused_in
from . import atomic as atomic_steps
from . import branches, children, clock, generations, inbox, patches, races, runner
from .deadlines import timed_out
from .lanes import CURRENT, Aborted, Lane, Slot
from .names import checked
from .steps import StepCall
from .waits import Wait, sleep_at

if TYPE_CHECKING:
    from .runs import Run

#: The signals that stop a run; once one is raised, the context refuses every primitive.
STOPS = (Suspend, LeaseLost, StoreFault)


class RecordedTime(datetime):
    """A datetime that can also be awaited, so `wf.now()` reads the same in async workflows."""

    def __await__(self) -> Generator[None, None, RecordedTime]:
        return self
        yield  # pragma: no cover - makes this a generator


class WorkflowContext:
    """What a sync workflow function gets as `wf`."""

    def __init__(self, run: Run, records: dict[tuple[str, int], StepRecord], workflow: str) -> None:
        self._run = run
        self._records = records
        #: An error that ends the instance whatever the workflow does (non-determinism).
        self._fatal: BaseException | None = None
        #: A lost lease or a database fault: it stops every lane of the run.
        self._halted: BaseException | None = None
        instance = run.instance
        self._root = Lane(self, "", instance.generation_started_at or instance.created_at)
        #: Hands the engine's side of a primitive called in a branch thread to the run's thread.
        self._driver = branches.Driver()
        #: The patch ids this run has asked for (each may be asked once).
        self._patches: set[str] = set()
        #: A replay check (check.py): replay the history, and stop each lane at its first new work.
        self._checking = False
        self.workflow = workflow
        self.instance_id: str = run.instance_id
        self.mode: str = run.mode

    def __repr__(self) -> str:
        return f"<WorkflowContext {self.workflow} {self.instance_id} mode={self.mode}>"

    @property
    def _lane(self) -> Lane:
        lane = CURRENT.get()
        if lane is None or lane.wf is not self:
            raise StepScopeError(
                "a workflow primitive was called from a thread the engine did not start for "
                "this run; run concurrent work with wf.parallel() or wf.map()"
            )
        return lane

    def _here(self) -> Lane:
        """The caller's lane, or the function's own when called from elsewhere (a step)."""
        lane = CURRENT.get()
        return lane if lane is not None and lane.wf is self else self._root

    @property
    def attempt(self) -> int | None:
        """The attempt number of the step running in this lane, while it runs."""
        return self._here().attempt

    # -- public, no I/O ---------------------------------------------------------------
    def now(self) -> datetime:
        """The time recorded for this point of the run: the end of the previous step or
        sleep, or the instance's creation. The same on every replay."""
        value = self._here().clock
        return RecordedTime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, tzinfo=value.tzinfo,
        )

    @property
    def meta(self) -> dict[str, Any]:
        """The values this run has published with `set_meta`, the unwritten ones included."""
        return dict(self._run.checkpoint.current_meta())

    # -- shared rules ---------------------------------------------------------------------
    def _check_scope(self, primitive: str) -> Lane:
        if runner.IN_STEP.get():
            raise StepScopeError(
                f"wf.{primitive}() was called inside a running step; workflow primitives "
                f"may only be called from the workflow function itself"
            )
        lane = self._lane
        if lane.task is not None and asyncio.current_task() is not lane.task:
            raise StepScopeError(
                f"wf.{primitive}() was called from an asyncio task the engine did not start: "
                f"positions would follow the order the tasks happen to run in. Call primitives "
                f"in the workflow itself (asyncio.gather(wf.step(...), wf.step(...)) is fine) "
                f"and run concurrent code as branches of wf.parallel()"
            )
        if self._halted is not None:
            raise self._halted
        if lane.stopped is not None:
            raise lane.stopped
        if self._fatal is not None:
            raise self._fatal
        if lane.aborted() and (lane.branch, lane.position) not in self._records:
            raise Aborted()  # a sibling failed: replay what it recorded, start nothing new
        deadline = self._run.instance.deadline_at
        if deadline is not None and deadline <= clock.now() and not self._checking:
            self._fatal = timed_out(self.workflow, self._run.instance)
            raise self._fatal
        return lane

    def _enter(self, primitive: str) -> Slot:
        """Check that `primitive` may run now, and give it the next position of its lane."""
        return self._check_scope(primitive).take()

    def _suspend(self, slot: Slot, wait: Wait) -> NoReturn:
        """Stop the lane at `wait`; the executor commits it once the function has unwound."""
        signal = Suspend()
        slot.lane.waits.append(wait)
        slot.lane.stopped = signal
        raise signal

    @cached_property
    def _parallels(self) -> set[tuple[str, int]]:
        """The slots where the recorded run called wf.parallel (found from its branches' records)."""
        found = set()
        for branch, _ in self._records:
            parts = branch.split("/") if branch else []
            for i, part in enumerate(parts):
                found.add(("/".join(parts[:i]), int(part.split(":", 1)[0])))
        return found

    def _concurrent(self, lane: Lane) -> bool:
        """Whether other lanes may be running now, so that what this one started (a child)
        must be written at once rather than with the run's next write."""
        return lane.branch != ""

    def _engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call the engine's side of a primitive, on the run's own thread and connection: a
        lost lease or a fault it raises stops the run. (Its database work turns its own
        errors into `StoreFault` where it does it; an error a replay raises again, a step's
        `IntegrityError` say, stays the workflow's.)"""
        try:
            return self._driver.call(fn, *args)
        except (LeaseLost, StoreFault) as signal:
            self._halted = signal
            raise

    def _replayed(self, slot: Slot, name: str, kind: str) -> StepRecord | None:
        record = self._records.get(slot.key)
        if record is None:
            if kind != StepKind.PARALLEL and slot.key in self._parallels:
                self._fatal = NonDeterminismError(
                    f"non-deterministic replay at {slot.describe()}: the code now calls {kind} "
                    f"{name!r} where the recorded run has wf.parallel")
                raise self._fatal
            return None
        if record.name != name or record.kind != kind:
            error = NonDeterminismError(
                f"non-deterministic replay at {slot.describe()}: the code now calls "
                f"{kind} {name!r} where the recorded run has {record.kind} {record.name!r}"
            )
            # For the replay check's report (check.py).
            error.branch, error.position = slot.branch, slot.position
            error.recorded = f"{record.kind} {record.name!r}"
            error.called = f"{kind} {name!r}"
            self._fatal = error
            raise error
        return record

    # -- sleep ------------------------------------------------------------------------------
    def _sleep_args(self, duration: timedelta | int | float | str, name: str | None) -> tuple[Slot, datetime, str]:
        slot = self._enter("sleep")
        delta = parse_duration(duration, what="sleep duration", allow_negative=True)
        return slot, clock.now() + delta, _sleep_name(name)

    def _sleep_until_args(self, when: datetime, name: str | None) -> tuple[Slot, datetime, str]:
        slot = self._enter("sleep_until")
        if not isinstance(when, datetime):
            raise ValueError(f"sleep_until needs a datetime, got {when!r}")
        if timezone.is_naive(when):
            raise ValueError(f"sleep_until needs an aware datetime, got naive {when!r}")
        return slot, when, _sleep_name(name)

    def sleep(self, duration: timedelta | int | float | str, *, name: str | None = None) -> None:
        """Pause durably for `duration`; the process may stop and the run resume elsewhere."""
        self._engine(sleep_at, self, *self._sleep_args(duration, name))

    def sleep_until(self, when: datetime, *, name: str | None = None) -> None:
        """Pause durably until the aware datetime `when`; a time already past returns at once."""
        self._engine(sleep_at, self, *self._sleep_until_args(when, name))

    # -- events -------------------------------------------------------------------------------
    def _wait_args(self, name: str, timeout: Any) -> tuple[Slot, str, timedelta | None]:
        slot = self._enter("wait_for_event")
        return slot, inbox.check_name(name), inbox.parse_timeout(timeout)

    def wait_for_event(self, name: str, *, timeout: timedelta | int | float | str | None = None) -> Any:
        """The payload of the oldest event `name` sent to this instance that no earlier wait
        took; the run pauses until one comes. With `timeout`, `EventTimeout` once it passes."""
        return self._engine(inbox.wait_at, self, *self._wait_args(name, timeout))

    # -- children -----------------------------------------------------------------------------
    def start_child(self, workflow: Any, /, *args: Any, instance_id: str | None = None,
                    **kwargs: Any) -> children.ChildHandle:
        """Start a child instance once (a replay returns the same handle, starting nothing).
        Its id is derived from this instance's id and the position unless given."""
        slot = self._enter("start_child")
        return self._engine(children.start_at, self, slot, workflow, args, kwargs, instance_id)

    def wait_child(self, child: children.ChildHandle | str) -> Any:
        """The child's result once it has finished; `ChildWorkflowFailed` if it failed,
        `WorkflowCancelled` if it was cancelled. The run pauses until then."""
        slot = self._enter("wait_child")
        return self._engine(children.wait_at, self, slot, child)

    def run_child(self, workflow: Any, /, *args: Any, instance_id: str | None = None, **kwargs: Any) -> Any:
        """`wait_child(start_child(...))`."""
        return self.wait_child(self.start_child(workflow, *args, instance_id=instance_id, **kwargs))

    # -- meta ---------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        """Publish a small JSON value a client can read while the instance runs. It goes
        out with the run's next write, fenced like it; a replay that sets an older value on
        its way to that write never publishes it."""
        self._check_scope("set_meta")
        if not isinstance(key, str) or not key:
            raise ValueError(f"meta keys must be non-empty text, got {key!r}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"meta value {key!r} must be plain JSON: {exc}") from None
        bad = refused_in({key: value})
        if bad is not None:
            raise SerializationError(f"meta value {key!r} cannot be stored: {bad!r} holds a NUL character "
                                     f"or a lone surrogate, which the database refuses")
        self._engine(self._set_meta, key, value)

    def _set_meta(self, key: str, value: Any) -> None:
        checkpoint = self._run.checkpoint
        current = checkpoint.current_meta()
        if key in current and current[key] == value:
            return
        checkpoint.meta = {**current, key: value}

    # -- continuing as new -----------------------------------------------------------------------
    def continue_as_new(self, *args: Any, **kwargs: Any) -> NoReturn:
        """End the run and start this instance over with these arguments and an empty
        history (generations.py). In an async workflow it may be awaited or not."""
        lane = self._check_scope("continue_as_new")
        generations.continue_at(self.workflow, lane, args, kwargs)

    # -- patches ------------------------------------------------------------------------------
    def patched(self, patch_id: str) -> bool:
        """True where this run reaches `patch_id` under the code that has it (recorded, so it
        stays True on replay); False in an instance that already ran past this point under
        the code before it, and then it takes no position. See patches.py."""
        patches.check_id(patch_id)
        lane = self._check_scope("patched")
        return bool(self._engine(patches.patched_at, self, lane, patch_id))

    def deprecate_patch(self, patch_id: str) -> None:
        """Where `if wf.patched(patch_id):` was, once every instance from before the patch
        has finished: histories that recorded the patch keep replaying."""
        patches.check_id(patch_id)
        lane = self._check_scope("deprecate_patch")
        self._engine(patches.deprecated_at, self, lane, patch_id)

    # -- parallel branches ----------------------------------------------------------------------
    def parallel(self, *parallel_branches: Callable[[], Any], max_concurrency: int | None = None) -> list[Any]:
        """Run the branches (callables without arguments) at the same time, each with
        positions of its own, and return their results in the order given. When a branch
        raises, the others start nothing new, and the first error in branch order is raised;
        the run pauses only when every unfinished branch waits."""
        fns, limit = branches.checked(parallel_branches, max_concurrency)
        slot = self._enter("parallel")
        return branches.run_sync(self, slot, fns, limit)

    def race(self, *racing_branches: Callable[[], Any]) -> tuple[int, Any]:
        """Run the branches (callables without arguments) at the same time, as `parallel`
        does, and return `(index, value)` of the first to finish, or raise its error. The
        others stop at their next primitive, their waits abandoned (races.py)."""
        fns = races.checked(racing_branches)
        slot = self._enter("race")
        return races.run_sync(self, slot, fns)

    def map(self, name: str, fn: Callable[..., Any], items: Any, *, max_concurrency: int | None = None,
            retry: RetryPolicy | None = None, timeout: timedelta | int | float | str | None = None) -> list[Any]:
        """One step `f"{name}[{i}]"` per item, run as parallel branches; results in item order."""
        return self.parallel(*branches.map_branches(self, name, fn, items, retry, timeout),
                             max_concurrency=max_concurrency)

    # -- step ---------------------------------------------------------------------------------
    def step(
        self, name: str, fn: Callable[..., Any], /, *args: Any,
        retry: RetryPolicy | None = None, timeout: timedelta | int | float | str | None = None,
        atomic: bool = False, limiter: str | None = None, **kwargs: Any,
    ) -> Any:
        """Run `fn(*args, **kwargs)` once and record its result; later runs return the record.
        With `atomic=True` its database writes and its record commit in one transaction
        (atomic.py); with `limiter=` each attempt first takes a unit of that limiter of the
        LIMITERS setting, waiting durably while it is full (limiters.py). In an async
        workflow, an awaitable of the result.

        `name` and `fn` are positional-only, so that a step function may itself take keyword
        arguments called `name` or `fn`; only `retry`, `timeout`, `atomic` and `limiter`
        are reserved."""
        # The call is checked, and takes its position, here for both kinds of workflow; each
        # runs it its own way (`_step`).
        return self._step(StepCall(self, name, fn, args, kwargs, retry, timeout, atomic, limiter))

    def _step(self, call: StepCall) -> Any:
        outcome = self._engine(call.replay)
        if outcome.returns:
            return outcome.value
        while True:
            remaining = self._engine(call.start_attempt)
            if call.atomic:
                ok, value = self._engine(atomic_steps.attempt, call)
                call.lane.attempt = None
                if ok:
                    return value
                self._engine(call.failed, value)  # raises unless it retries now
                continue
            try:
                ok, value = runner.attempt(call.fn, call.args, call.kwargs, remaining, call.describe())
            finally:
                call.lane.attempt = None
            if ok:
                return self._engine(call.succeeded, value)
            self._engine(call.failed, value)  # raises unless it retries now


class AsyncWorkflowContext(WorkflowContext):
    """What an `async def` workflow gets as `wf`: the same primitives, awaited.

    Each primitive checks where it is called, and takes its position, before it returns its
    awaitable: positions follow the order of the calls, not of their ends, so
    `asyncio.gather(wf.step(...), wf.step(...))` replays exactly whatever order the steps
    finished in. (A sync step that calls `wf.step(...)` also gets StepScopeError at once, as
    in a sync workflow, rather than an un-awaited coroutine.) The engine's side of each
    primitive runs through `sync_to_async(thread_sensitive=True)`, which hands it back to the
    thread that started the run, so every write uses the run's own connection, one at a time.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Primitives created and not yet finished: more than one means sync steps need threads.
        self._pending = 0
        #: Primitives under way, which the run waits for before it concludes.
        self._running = 0
        self._idle: asyncio.Event | None = None

    # The primitives return awaitables here where the sync context returns their values: the
    # overrides that the type checker flags ([override]) differ from the sync ones on purpose.
    def sleep(self, duration: timedelta | int | float | str, *, name: str | None = None) -> Awaitable[None]:  # type: ignore[override]
        return self._in_engine(sleep_at, self, *self._sleep_args(duration, name))

    def sleep_until(self, when: datetime, *, name: str | None = None) -> Awaitable[None]:  # type: ignore[override]
        return self._in_engine(sleep_at, self, *self._sleep_until_args(when, name))

    def wait_for_event(self, name: str, *, timeout: timedelta | int | float | str | None = None) -> Awaitable[Any]:
        return self._in_engine(inbox.wait_at, self, *self._wait_args(name, timeout))

    def start_child(self, workflow: Any, /, *args: Any, instance_id: str | None = None,  # type: ignore[override]
                    **kwargs: Any) -> Awaitable[children.ChildHandle]:
        slot = self._enter("start_child")
        return self._in_engine(children.start_at, self, slot, workflow, args, kwargs, instance_id)

    def wait_child(self, child: children.ChildHandle | str) -> Awaitable[Any]:
        slot = self._enter("wait_child")
        return self._in_engine(children.wait_at, self, slot, child)

    def run_child(self, workflow: Any, /, *args: Any, instance_id: str | None = None,
                  **kwargs: Any) -> Awaitable[Any]:
        # Both positions are taken now, so that run_child calls gathered together keep them
        # in call order however their children finish.
        start = self._enter("run_child")
        wait = start.lane.take()
        return self._run_child(start, wait, workflow, args, kwargs, instance_id)

    async def _run_child(self, start: Slot, wait: Slot, workflow: Any, args: tuple[Any, ...],
                         kwargs: dict[str, Any], instance_id: str | None) -> Any:
        child = await self._in_engine(children.start_at, self, start, workflow, args, kwargs, instance_id)
        return await self._in_engine(children.wait_at, self, wait, child)

    def _concurrent(self, lane: Lane) -> bool:
        return lane.branch != "" or self._running > 1

    async def _in_engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._flight():
            return await sync_to_async(self._engine, thread_sensitive=True)(fn, *args)

    def set_meta(self, key: str, value: Any) -> Awaitable[None]:  # type: ignore[override]
        super().set_meta(key, value)
        return _done()

    def patched(self, patch_id: str) -> patches.PatchFlag:  # type: ignore[override]
        """As in a sync workflow; the answer may be awaited or used as it is."""
        return patches.PatchFlag(super().patched(patch_id))

    def deprecate_patch(self, patch_id: str) -> Awaitable[None]:  # type: ignore[override]
        super().deprecate_patch(patch_id)
        return _done()

    def parallel(self, *parallel_branches: Callable[[], Any],  # type: ignore[override]
                 max_concurrency: int | None = None) -> Awaitable[list[Any]]:
        fns, limit = branches.checked(parallel_branches, max_concurrency)
        slot = self._enter("parallel")
        return branches.run_async(self, slot, fns, limit)

    def race(self, *racing_branches: Callable[[], Any]) -> Awaitable[tuple[int, Any]]:  # type: ignore[override]
        fns = races.checked(racing_branches)
        slot = self._enter("race")
        return races.run_async(self, slot, fns)

    def map(self, name: str, fn: Callable[..., Any], items: Any, *,  # type: ignore[override]
            max_concurrency: int | None = None, retry: RetryPolicy | None = None,
            timeout: timedelta | int | float | str | None = None) -> Awaitable[list[Any]]:
        return self.parallel(*branches.map_branches(self, name, fn, items, retry, timeout),
                             max_concurrency=max_concurrency)

    def _step(self, call: StepCall) -> Awaitable[Any]:
        self._pending += 1
        return self._step_async(call)

    async def _step_async(self, call: StepCall) -> Any:
        try:
            async with self._flight():
                db = sync_to_async(self._engine, thread_sensitive=True)
                outcome = await db(call.replay)
                if outcome.returns:
                    return outcome.value
                is_coroutine = runner.is_coroutine_function(call.fn)
                while True:
                    remaining = await db(call.start_attempt)
                    if call.atomic:
                        ok, value = await db(atomic_steps.attempt, call)
                        call.lane.attempt = None
                        if ok:
                            return value
                        await self._failed(call, value)  # raises unless it retries now
                        continue
                    # Beside other primitives, a sync step needs a thread of its own: the
                    # run's thread would run them one after the other.
                    own_thread = self._pending > 1 or call.lane.branch != ""
                    try:
                        ok, value = await runner.attempt_async(call.fn, call.args, call.kwargs, remaining,
                                                               call.describe(), is_coroutine, own_thread)
                    finally:
                        call.lane.attempt = None
                    if ok:
                        return await db(call.succeeded, value)
                    await self._failed(call, value)  # raises unless it retries now
        finally:
            self._pending -= 1

    async def _failed(self, call: StepCall, error: BaseException) -> None:
        try:
            await sync_to_async(self._engine, thread_sensitive=True)(call.failed, error)
        except (KeyboardInterrupt, SystemExit) as failed:
            if asyncio.current_task() is call.lane.task:
                raise
            # The step was awaited in a task of its own (asyncio.gather): asyncio ends the
            # event loop when either of these leaves a task. The instance fails with it,
            # whatever the workflow does, and the task raises an ordinary exception.
            self._fatal = failed
            raise runner.Carried(failed) from None

    def _flight(self) -> _Flight:
        return _Flight(self)

    async def _settled(self) -> None:
        """Wait for the primitives still under way (the rest of an `asyncio.gather` that
        raised), so that the run concludes only once they have recorded what they did."""
        while self._running:
            self._idle = asyncio.Event()
            await self._idle.wait()


class _Flight:
    def __init__(self, wf: AsyncWorkflowContext) -> None:
        self.wf = wf

    async def __aenter__(self) -> None:
        self.wf._running += 1

    async def __aexit__(self, *exc_info: Any) -> None:
        self.wf._running -= 1
        if not self.wf._running and self.wf._idle is not None:
            self.wf._idle.set()


async def _done() -> None:
    return None


def _sleep_name(name: Any) -> str:
    """A sleep's record name: the default (for no name, or ""), or one the workflow gave,
    checked like a step's, so that a replay compares it with what was stored."""
    return "sleep" if name is None or name == "" else checked(name, "a sleep name")
