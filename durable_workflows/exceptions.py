"""Every error the library raises, in one place.

Each class's docstring is its default message, so a new failure is a two-line subclass.
`Suspend`, `LeaseLost` and `StoreFault` are control flow, not errors: they derive from
`BaseException` so that a workflow's own `except Exception:` cannot swallow them.
"""

from __future__ import annotations


class DurableWorkflowError(Exception):
    """A durable workflow error occurred."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class WorkflowNotFound(DurableWorkflowError, LookupError):
    """No workflow instance has that id."""


class UnknownWorkflow(DurableWorkflowError, LookupError):
    """No workflow is registered under that name."""


class InvalidTransition(DurableWorkflowError):
    """The state machine does not allow that state change."""


class NonDeterminismError(DurableWorkflowError):
    """The workflow took a different path on replay than the one it recorded."""

    # Set where the engine raises it, for the replay check's report (engine/check.py).
    branch: str
    position: int
    recorded: str
    called: str


class SerializationError(DurableWorkflowError, TypeError):
    """The value cannot be stored."""


class CodecError(DurableWorkflowError, ValueError):
    """A stored value cannot be decrypted."""


class StepTimeout(DurableWorkflowError, TimeoutError):
    """The step attempt ran past its deadline."""


class StepScopeError(DurableWorkflowError):
    """Workflow primitives cannot be called from inside a running step."""


class NonRetryableError(DurableWorkflowError):
    """Raised by a step to fail at once, whatever its retry policy says."""


class WorkflowIdConflict(DurableWorkflowError):
    """An instance with that id already exists for another workflow."""


class ReplayError(NonDeterminismError):
    """The recorded history cannot be replayed by the code this process has loaded."""


class EventTimeout(DurableWorkflowError, TimeoutError):
    """No event of that name arrived before the wait's timeout."""


class WorkflowTimeout(DurableWorkflowError, TimeoutError):
    """The workflow instance ran past its deadline."""


class ChildWorkflowFailed(DurableWorkflowError):
    """A child workflow failed."""

    def __init__(self, message: str | None = None, child_id: str = "",
                 error: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.child_id = child_id
        self.error = dict(error or {})
        # All three in args, so that a replay rebuilds the same exception from them.
        self.args = (self.args[0], child_id, self.error)

    def __str__(self) -> str:
        return str(self.args[0])


class WorkflowCancelled(DurableWorkflowError):
    """The workflow instance was cancelled."""


class WorkflowFailed(DurableWorkflowError):
    """The workflow instance failed."""


class WorkflowNotFinished(DurableWorkflowError):
    """The workflow instance has not finished yet."""


class DispatchError(DurableWorkflowError):
    """The task queue did not take the instance's task; `recover()` sends it again."""


class WorkerShutdown(SystemExit):
    """The worker process was told to stop (SIGTERM): what it runs unwinds and gives its
    lease back. Never a step's failure, as a `SystemExit` the step raised itself is."""


class Suspend(BaseException):
    """Unwinds a workflow function at a durable wait (sleep, retry delay).

    Raised by the engine and caught by the engine; user code never sees it unless it
    catches `BaseException`, which it must not.
    """


class ContinueAsNew(BaseException):
    """Unwinds a workflow function at `wf.continue_as_new(...)`: the executor then starts
    the instance's next generation with `input` (the new arguments, serialized).

    Control flow like `Suspend`: a workflow's `except Exception:` does not see it.
    """

    def __init__(self, input: str) -> None:
        super().__init__("the workflow continues as new")
        self.input = input


class LeaseLost(BaseException):
    """This executor no longer owns the instance: another one claimed it, or it was cancelled."""


class StoreFault(BaseException):
    """The engine's own database work failed: a dropped connection, a lock or statement
    timeout, a deadlock, a failover.

    It says nothing about the workflow, so it must never become the workflow's failure or
    reach its `except Exception:`. The run unwinds, gives up its lease, and the instance is
    recovered; a fault that keeps coming back ends through MAX_RECOVERY_ATTEMPTS.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
