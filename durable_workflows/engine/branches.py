"""Parallel branches: `wf.parallel(*branches)` and `wf.map(name, fn, items)`.

Each branch runs on a lane of its own (lanes.py), so its primitives take positions of their
own and a replay is exact whatever order the branches finished in. A branch that must wait
stops its lane, not the run: the others go on, and once every branch has finished or
stopped, `wf.parallel` pauses the run at all their waits together (the pause's alarm is the
first of them to end, and a send or a child that ends any of them resumes the run). On the
next run the finished branches replay from their records; the waiting ones go on from there.

In a sync workflow each branch runs in a thread of its own, and so do its sync steps' bodies,
with that thread's database connection, closed when the branch ends. The engine's side of
every primitive, its reads and writes, is handed back to the thread that runs the workflow
(`Driver`), so one connection and one transaction at a time carry the run's writes, as
without branches; tests in a transaction (`TestCase`) see them. In an `async def` workflow
the branches are tasks on the run's event loop, and a sync step in a branch runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import connections

from ..durations import parse_duration
from ..exceptions import Suspend
from ..models import StepKind, StepState
from ..retry import RetryPolicy
from . import stops
from .cursor import Cursor
from .lanes import CURRENT, Aborted, Lane, Slot

if TYPE_CHECKING:
    from .context import WorkflowContext

#: Threads a sync `wf.parallel` uses at most when `max_concurrency` is not given.
DEFAULT_THREADS = 32

Outcome = tuple[bool, Any]


def checked(fns: Sequence[Any], max_concurrency: Any, primitive: str = "parallel",
            ) -> tuple[list[Callable[[], Any]], int | None]:
    """The branches and the concurrency bound, once both are known to be usable; nothing has
    run and no position is taken when they are not."""
    for index, fn in enumerate(fns):
        if not callable(fn):
            raise TypeError(f"wf.{primitive}: branch {index} is not callable (got {fn!r}); pass "
                            f"functions without arguments, such as lambda: wf.step(...)")
    if max_concurrency is not None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError(f"max_concurrency must be a whole number or None, got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    return list(fns), max_concurrency


def map_branches(wf: WorkflowContext, name: str, fn: Callable[..., Any], items: Iterable[Any],
                 retry: Any, timeout: Any) -> list[Callable[[], Any]]:
    """`wf.map`'s branches: one step `f"{name}[{i}]"` per item."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"wf.map needs a non-empty step name, got {name!r}")
    if not callable(fn):
        raise TypeError(f"wf.map {name!r}: {fn!r} is not callable")
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"wf.map {name!r}: items must be iterable, got {items!r}") from None
    # Checked here too, so that a bad retry or timeout is an error with no items as well.
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"wf.map {name!r}: retry must be a RetryPolicy, got {retry!r}")
    if timeout is not None:
        parse_duration(timeout, what=f"timeout of wf.map {name!r}")
    return [partial(wf.step, f"{name}[{i}]", fn, item, retry=retry, timeout=timeout)
            for i, item in enumerate(items)]


# -- sync workflows ------------------------------------------------------------------------------
class Driver:
    """Runs the engine's side of a primitive called in a branch thread on the run's thread.

    The run's thread serves the work while it waits in the outermost `wf.parallel`; a branch
    thread hands its work over and waits for the outcome. Anywhere else (no branches, or an
    async workflow, whose engine work `sync_to_async` already brings to the run's thread)
    the work is done where it is called.
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.local = threading.local()

    def in_branch(self) -> bool:
        return getattr(self.local, "branch", False)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not getattr(self.local, "branch", False):  # in_branch(), read here: thrice a step
            return fn(*args)
        job = _Job(contextvars.copy_context(), fn, args)
        self.jobs.put(job)
        return job.result()

    def serve(self, futures: list[Future[Outcome]]) -> None:
        for future in futures:
            future.add_done_callback(lambda _: self.jobs.put(None))
        while not all(future.done() for future in futures):
            job = self.jobs.get()
            if job is not None:
                job.run()


class _Job:
    def __init__(self, context: contextvars.Context, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.context = context
        self.fn = fn
        self.args = args
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.context.run(self.fn, *self.args)
        except BaseException as error:  # handed to the branch that asked
            self.error = error
        finally:
            self.done.set()

    def result(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


def run_sync(wf: WorkflowContext, slot: Slot, fns: list[Callable[[], Any]], limit: int | None) -> list[Any]:
    lanes = _lanes(wf, slot, len(fns))
    if not lanes:
        return []
    return conclude(wf, slot, lanes, outcomes_sync(wf, lanes, fns, limit))


def outcomes_sync(wf: WorkflowContext, lanes: list[Lane], fns: list[Callable[[], Any]],
                  limit: int | None) -> list[Outcome]:
    """Run each function on its lane, in threads, until every one has finished or stopped."""
    driver = wf._driver
    workers = min(limit or DEFAULT_THREADS, len(fns))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="durable-branch") as pool:
        futures = [pool.submit(contextvars.copy_context().run, _branch_thread, driver, lane, fn)
                   for lane, fn in zip(lanes, fns, strict=True)]
        if driver.in_branch():
            wait(futures)  # a parallel inside a branch: the run's thread serves its work too
        else:
            driver.serve(futures)
    return [future.result() for future in futures]


def _branch_thread(driver: Driver, lane: Lane, fn: Callable[[], Any]) -> Outcome:
    driver.local.branch = True
    CURRENT.set(lane)
    try:
        if _stopped_before_it_starts(lane):
            return False, Aborted()
        try:
            value = fn()
            if inspect.isawaitable(value):
                getattr(value, "close", lambda: None)()
                raise TypeError(f"branch {lane.branch} returned an awaitable; a sync workflow's "
                                f"branches are plain functions (make the workflow async def)")
            return True, value
        except BaseException as error:
            return _failed(lane, error)
    finally:
        connections.close_all()


def _stopped_before_it_starts(lane: Lane) -> bool:
    """A sibling failed before this branch started, and it has no record to replay."""
    return lane.aborted() and (lane.branch, 0) not in lane.wf._records


def _failed(lane: Lane, error: BaseException) -> Outcome:
    if stops.is_failure(error) and lane.stopped is None and lane.group is not None:
        lane.group.failed = True  # the siblings start nothing new
    return False, error


# -- async workflows -----------------------------------------------------------------------------
async def run_async(wf: WorkflowContext, slot: Slot, fns: list[Callable[[], Any]], limit: int | None) -> list[Any]:
    lanes = _lanes(wf, slot, len(fns))
    if not lanes:
        return []
    return conclude(wf, slot, lanes, await outcomes_async(lanes, fns, limit))


async def outcomes_async(lanes: list[Lane], fns: list[Callable[[], Any]], limit: int | None) -> list[Outcome]:
    """Run each function on its lane, as tasks of the run's loop, until every one has
    finished or stopped."""
    gate = asyncio.Semaphore(limit) if limit else None

    async def branch(lane: Lane, fn: Callable[[], Any]) -> Outcome:
        CURRENT.set(lane)  # each task runs in a copy of the context: this lane is its own
        lane.task = asyncio.current_task()
        if gate is None:
            return await _outcome_async(lane, fn)
        async with gate:
            return await _outcome_async(lane, fn)

    tasks = [asyncio.ensure_future(branch(lane, fn)) for lane, fn in zip(lanes, fns, strict=True)]
    return list(await asyncio.gather(*tasks))


async def _outcome_async(lane: Lane, fn: Callable[[], Any]) -> Outcome:
    if _stopped_before_it_starts(lane):
        return False, Aborted()
    try:
        value = fn()
        if inspect.isawaitable(value):
            value = await value
        return True, value
    except asyncio.CancelledError:
        raise
    except BaseException as error:
        return _failed(lane, error)


# -- the start and the outcome ---------------------------------------------------------------------
def _lanes(wf: WorkflowContext, slot: Slot, count: int) -> list[Lane]:
    """The branches' lanes. When the recorded run saw a branch fail here (its marker), they
    start as the siblings of a failed branch: each replays what it recorded and starts
    nothing new, as in that run, whatever order the branches replay in."""
    marker = Cursor(wf, slot).replay("parallel", StepKind.PARALLEL)  # another record: the code changed
    if not count:
        return []
    lanes = slot.lane.fork(slot.position, count)
    if marker is not None and lanes[0].group is not None:
        lanes[0].group.failed = True
    return lanes


def _mark_failed(wf: WorkflowContext, slot: Slot) -> None:
    cursor = Cursor(wf, slot)
    if not cursor.recorded():
        marker = cursor.new_record("parallel", StepKind.PARALLEL, staged=False, state=StepState.FAILED)
        marker.finished_at = marker.started_at
        cursor.keep(marker)


def conclude(wf: WorkflowContext, slot: Slot, lanes: list[Lane], outcomes: list[Outcome]) -> list[Any]:
    """What `wf.parallel` returns or raises once every branch has finished or stopped."""
    parent = slot.lane
    raise_stops(wf, outcomes)
    for lane, (ok, value) in zip(lanes, outcomes, strict=True):
        if not ok and stops.is_failure(value) and lane.stopped is None:
            wf._engine(_mark_failed, wf, slot)
            raise value  # the first error in branch order
    if any(isinstance(value, Aborted) for _, value in outcomes):
        raise Aborted()  # a branch further out failed
    suspend_if_waiting(parent, lanes)
    for lane in lanes:
        parent.advance(lane.clock)
    return [value for _, value in outcomes]


def raise_stops(wf: WorkflowContext, outcomes: list[Outcome]) -> None:
    """Whatever stops the run (a lost lease, a fault, a fatal error, a stop of the worker)
    outranks what the branches did."""
    if wf._halted is not None:
        raise wf._halted
    if wf._fatal is not None:
        raise wf._fatal
    for ok, value in outcomes:
        if not ok and not stops.is_failure(value) and not isinstance(value, stops.RUN_SIGNALS):
            raise value  # a stop of the worker


def suspend_if_waiting(parent: Lane, lanes: list[Lane]) -> None:
    """Stop the parent lane at every wait its branches stopped at, if any did."""
    waiting = [lane for lane in lanes if isinstance(lane.stopped, Suspend)]
    if waiting:
        signal = Suspend()
        parent.waits.extend(wait for lane in waiting for wait in lane.waits)
        parent.stopped = signal
        raise signal
