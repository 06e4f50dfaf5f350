"""What the engine asks of whatever runs its instances: the `Dispatcher` port.

The engine never imports a task queue. It hands each run to a dispatcher, and its own choices
depend on how that hand-over behaves, so the dispatcher declares it here rather than the
engine guessing from which attributes an object happens to have:

- a start writes the broker's task in its own statement (`task_row`), or dispatches inside its
  transaction (`transactional`), only where the task then commits or rolls back with the
  instance;
- the client reads a handle again after `start()` only when the run has already happened
  (`synchronous`);
- recovery waits longer before sending a task again while the broker has a backlog (`waiting`).

A project's dispatcher written against the first protocol has `dispatch` alone (and maybe
`synchronous`): `adapt()` gives it `BaseDispatcher`'s defaults for the rest, so that it keeps
working without subclassing anything.

This module imports nothing of the engine, so that `durable_workflows.dispatch`, which the
engine's modules import, can build on it.
"""

from __future__ import annotations

from typing import Any, Protocol

#: A broker's queue row: its table, and its column values.
TaskRow = tuple[str, dict[str, Any]]


class Dispatcher(Protocol):
    @property
    def synchronous(self) -> bool:
        """True when dispatch() runs the instance before it returns (no separate worker)."""

    @property
    def transactional(self) -> bool:
        """True when a dispatch inside the caller's transaction writes its task in that
        transaction: the instance and its task commit together or not at all."""

    def task_row(self, instance_id: str, mode: str, epoch: int) -> TaskRow | None:
        """The broker row of this run, for a start that inserts it in the statement that
        inserts the instance; None when the broker's tasks are not rows of our database."""

    def waiting(self) -> int | None:
        """How many tasks wait in the broker for a worker; None when it cannot tell."""

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        """Hand the run to whatever runs it. May raise DispatchError: the instance then
        stays as it is, and recovery sends it again."""


class BaseDispatcher:
    """The defaults of a dispatcher that sends its tasks to a worker of its own, in a broker
    outside our database, and cannot count them. Subclasses implement `dispatch`."""

    @property
    def synchronous(self) -> bool:
        return False

    @property
    def transactional(self) -> bool:
        return False

    def task_row(self, instance_id: str, mode: str, epoch: int) -> TaskRow | None:
        return None

    def waiting(self) -> int | None:
        return None

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement dispatch()")


class _Adapted(BaseDispatcher):
    """A dispatcher that does not subclass BaseDispatcher: what it declares itself wins, the
    defaults fill in the rest. Its members are read at each use, as they may change (a
    property that follows the settings)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    @property
    def synchronous(self) -> bool:
        return bool(getattr(self.wrapped, "synchronous", False))

    @property
    def transactional(self) -> bool:
        return bool(getattr(self.wrapped, "transactional", False))

    def task_row(self, instance_id: str, mode: str, epoch: int) -> TaskRow | None:
        method = getattr(self.wrapped, "task_row", None)
        return None if method is None else method(instance_id, mode, epoch)

    def waiting(self) -> int | None:
        method = getattr(self.wrapped, "waiting", None)
        return None if method is None else method()

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        self.wrapped.dispatch(instance_id, mode, epoch)

    def __getattr__(self, name: str) -> Any:
        # What the project's own code reads of its dispatcher, beyond the port.
        if name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"<adapted {self.wrapped!r}>"


def adapt(dispatcher: Any) -> Dispatcher:
    """`dispatcher` with every member of the port."""
    if isinstance(dispatcher, BaseDispatcher):
        return dispatcher
    return _Adapted(dispatcher)
