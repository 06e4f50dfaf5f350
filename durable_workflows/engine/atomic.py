"""Atomic steps: `wf.step(..., atomic=True)` runs the step's function inside one transaction
on our database (the DATABASE setting, "default" unless the project says otherwise) and writes the step's record in that same transaction, fenced by
the run's epoch.

So the step's own database writes and its checkpoint commit together or not at all: a crash
mid-step rolls the writes back and the step runs again cleanly, a step that finished never
runs twice, a failed attempt's writes are rolled back before a retry, and a worker that lost
its claim cannot commit (its fence fails inside the transaction, which rolls back). Calls to
other systems (an e-mail, a payment API) are not covered: only what goes through that
database's connection is.

The function runs on the run's own thread and connection, also when called in a parallel
branch (the branch hands the whole attempt over), so atomic steps of one run commit one at
a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import database
from . import runner

if TYPE_CHECKING:
    from .steps import StepCall


class _Failed(BaseException):
    """Carries the step's own error out of the transaction, which rolls back on the way."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def check(name: str, fn: Any, timeout: Any) -> None:
    if timeout is not None:
        raise ValueError(f"step {name!r}: an atomic step cannot have a timeout (a thread cannot be "
                         f"stopped inside a transaction); use the database's statement timeout")
    if runner.is_coroutine_function(fn):
        raise TypeError(f"step {name!r}: an atomic step must be a plain function, not a coroutine "
                        f"function: the ORM's transactions are synchronous")
    routed = database.routed_elsewhere()
    if routed is not None:
        raise ValueError(f"step {name!r}: an atomic step commits on {database.alias()!r}, the "
                         f"DATABASE setting, but the project's routers send durable_workflows' "
                         f"tables to {routed!r}; set DURABLE_WORKFLOWS['DATABASE'] = {routed!r}")


def attempt(call: StepCall) -> tuple[bool, Any]:
    """One attempt in one transaction: (True, the result as stored) once committed, or
    (False, the step's error) with its writes rolled back. A lost lease or a fault of the
    checkpoint rolls everything back too, and stops the run."""
    try:
        with database.atomic():
            try:
                value = runner.call_in_scope(call.fn, call.args, call.kwargs)
            except Exception as error:
                raise _Failed(runner.failure(error) or error) from None
            return True, call.succeeded(value)
    except _Failed as failed:
        return False, failed.error
