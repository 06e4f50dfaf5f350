"""Helpers for testing your own workflows: run them to their end in this process, on a
virtual clock, so that a workflow that sleeps for thirty days finishes in a blink.

    from durable_workflows import testing

    def test_the_order_ships():
        handle = testing.run("shop.order", "1001", events={"payment confirmed": {"reference": "p-1"}})
        assert handle.state == "completed"

`run()` starts the instance with the engine's own code (nothing is mocked), runs it and its
children inline, and whenever the family pauses: delivers the next event it waits for from
`events`, or else moves the virtual clock to the first alarm or deadline among them (sleeps,
retry delays, event and workflow timeouts) and fires it. A wait nobody answers leaves the
instance Paused, and `run()` returns its handle as it is. It works inside Django's
`TestCase`: everything happens in the test's thread and transaction.

The virtual clock is the engine's clock (`durable_workflows.engine.clock`), moved ahead while
it is active: real time goes on, skipped time is added. It is installed as the engine's time
source for the whole process, its threads included (a `wf.parallel` branch's, the
heartbeat's), and `django.utils.timezone.now` is left alone: other libraries and Django
itself keep the real time, while everything the engine stamps or judges (creation times,
sleeps, timeouts, `wf.now()`) follows the virtual one. Steps run for real, at real speed.

For pytest, the `durable` fixture (registered by this package's pytest plugin) keeps one clock
for the whole test and offers `run`, `send_event` and `advance(duration)`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from . import serialization
from .client import WorkflowHandle
from .dispatch import DISPATCHER_OVERRIDE, InlineDispatcher
from .durations import parse_duration
from .engine import clock as engine_clock
from .engine import fire_alarms
from .engine.inbox import check_name
from .engine.instances import WorkflowRef, create, enqueue
from .messaging import send_event as _send_event
from .models import Alarm, StepKind, StepRecord, StepState, WorkflowInstance
from .registry import get_definition
from .states import TERMINAL, State, as_state

__all__ = ["Durable", "VirtualClock", "run", "virtual_clock"]

#: Enough for any workflow a test would run; a loop that never ends stops here.
MAX_ROUNDS = 10_000

# Held while virtual_clock() looks for an active clock and installs one: two threads that
# enter at once share one clock.
_STARTING = threading.Lock()


class VirtualClock:
    """Real time plus the time skipped so far. Real time is the engine's own clock (on
    PostgreSQL the database server's), or the source that was installed before this one,
    so that the times the engine set and this clock's agree."""

    def __init__(self, base: engine_clock.Source | None = None) -> None:
        self.skipped = timedelta(0)
        self._base = base

    def now(self) -> datetime:
        real = engine_clock.wall() if self._base is None else self._base.now()
        return real + self.skipped

    def advance(self, by: timedelta) -> None:
        if by > timedelta(0):
            self.skipped += by

    def advance_to(self, when: datetime) -> None:
        """Move ahead to `when`, a time the engine set (an alarm's, a deadline)."""
        self.advance(when - self.now())


@contextmanager
def virtual_clock() -> Iterator[VirtualClock]:
    """Make the virtual clock the engine's, and engine dispatches run inline, for the
    duration. Nested uses share the outer clock, from any thread: the clock is the
    process's (engine/clock.py says why), and it stops when the outermost use ends."""
    with _STARTING:
        active = engine_clock.current()
        if isinstance(active, VirtualClock):
            clock, token = active, None
        else:
            clock = VirtualClock(active)
            token = engine_clock.use(clock)
    # The dispatcher is this context's: a thread that enters while another's clock runs
    # gets its own inline dispatches too.
    inline = isinstance(DISPATCHER_OVERRIDE.get(), InlineDispatcher)
    dispatch = None if inline else DISPATCHER_OVERRIDE.set(InlineDispatcher())
    try:
        yield clock
    finally:
        if dispatch is not None:
            DISPATCHER_OVERRIDE.reset(dispatch)
        if token is not None:
            engine_clock.restore(token)


def run(workflow: WorkflowRef, /, *args: Any, instance_id: str | None = None,
        events: dict[str, Any] | None = None, **kwargs: Any) -> WorkflowHandle:
    """Start `workflow` and run it, with its children, until it finishes or waits for
    something nobody will send. `events` maps an event name to its payload, or to a list of
    payloads delivered one per wait. Raises `UnknownWorkflow`, or `TypeError` for arguments
    that do not fit, as `start()` does."""
    get_definition(workflow)
    inbox = _inbox(events)
    with virtual_clock() as clock:
        instance, created = create(workflow, args, kwargs, instance_id)
        if created:
            enqueue(instance)
        return drive(instance.pk, clock, inbox)


def drive(instance_id: str, clock: VirtualClock, inbox: dict[str, list[Any]] | None = None) -> WorkflowHandle:
    """Run an instance's family until it finishes or nothing more will happen."""
    inbox = inbox if inbox is not None else {}
    for _ in range(MAX_ROUNDS):
        instance = WorkflowInstance.objects.get(pk=instance_id)
        if as_state(instance.state) in TERMINAL:
            break
        family = _family(instance_id)
        waiting = (StepRecord.objects.filter(instance_id__in=family, kind=StepKind.EVENT, state=StepState.AWAITING)
                   .order_by("id").values_list("instance_id", "name"))
        delivery = next(((pk, name) for pk, name in waiting if inbox.get(name)), None)
        if delivery is not None:
            pk, name = delivery
            _send_event(pk, name, inbox[name].pop(0))
            continue
        when = _next_due(family)
        if when is None:
            break  # nobody will answer: the instance stays as it is
        clock.advance_to(when)
        for pk in family:
            fire_alarms(instance_id=pk)
    return WorkflowHandle(WorkflowInstance.objects.get(pk=instance_id))


def _inbox(events: dict[str, Any] | None) -> dict[str, list[Any]]:
    if events is None:
        return {}
    if not isinstance(events, dict):
        raise TypeError(f"events must be a dict of event name to payload (or list of payloads), got {events!r}")
    inbox = {check_name(name): list(value) if isinstance(value, list) else [value] for name, value in events.items()}
    # Checked before the instance is created: a payload send_event would refuse later must
    # not leave it behind half-run.
    for name, payloads in inbox.items():
        for payload in payloads:
            serialization.dumps(payload, f"the payload of event {name!r}")
    return inbox


def _family(instance_id: str) -> list[str]:
    """The instance and its unfinished descendants."""
    family, frontier = [instance_id], [instance_id]
    while frontier:
        frontier = list(WorkflowInstance.objects.filter(parent_id__in=frontier).exclude(state__in=TERMINAL)
                        .values_list("pk", flat=True))
        family += frontier
    return family


def _next_due(family: list[str]) -> datetime | None:
    """The first alarm or workflow deadline among the family's Paused or Queued instances."""
    times = list(Alarm.objects.filter(instance_id__in=family, fired_at__isnull=True).values_list("fire_at", flat=True))
    # deadline_at__isnull=False: the ORM's types cannot know these are never None.
    times += [cast(datetime, deadline) for deadline in WorkflowInstance.objects.filter(
        pk__in=family, state__in=[State.PAUSED, State.QUEUED], deadline_at__isnull=False,
    ).values_list("deadline_at", flat=True)]
    return min(times, default=None)


class Durable:
    """What the `durable` pytest fixture gives a test: one virtual clock for the whole test."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock

    def run(self, workflow: WorkflowRef, /, *args: Any, instance_id: str | None = None,
            events: dict[str, Any] | None = None, **kwargs: Any) -> WorkflowHandle:
        return run(workflow, *args, instance_id=instance_id, events=events, **kwargs)

    def send_event(self, instance_id: str, name: str, payload: Any = None, *, event_id: str | None = None) -> bool:
        """`client.send_event`; a waiting instance resumes (inline) before it returns."""
        return _send_event(instance_id, name, payload, event_id=event_id)

    def advance(self, duration: timedelta | int | float | str) -> list[str]:
        """Move the clock ahead by `duration` and run what became due: returns the ids resumed."""
        self.clock.advance(parse_duration(duration, what="advance"))
        return fire_alarms()

    def now(self) -> datetime:
        return self.clock.now()
