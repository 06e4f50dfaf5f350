"""A failed step's exception, stored so that every replay raises the same one again.

A workflow may catch a step's failure and go on (`except PaymentDeclined: refund`). Its
replay must then raise an exception the same `except` clause catches, with the same `args`,
or the replay takes another branch than the first run did. So the failure is stored with its
class's import path and its arguments, and rebuilt from them.
"""

from __future__ import annotations

import builtins
import sys
import weakref
from typing import Any

from .. import serialization
from ..exceptions import ReplayError, SerializationError
from ..models import StepRecord
from . import stops
from .lanes import describe

# Classes this process has seen fail a step, by path: a class defined inside a function
# cannot be imported by its path, but a replay in the same process still finds it here.
_seen: weakref.WeakValueDictionary[str, type] = weakref.WeakValueDictionary()


def replay_info(error: BaseException) -> str:
    """The class path and arguments of `error`, as stored text."""
    cls = type(error)
    path = f"{cls.__module__}:{cls.__qualname__}"
    _seen[path] = cls
    info: dict[str, Any] = {"class": path}
    try:
        info["args"] = serialization.dumps(list(error.args), "the step's error", sealed=False)
    except SerializationError:
        pass  # arguments that cannot be stored: the replay gets the message instead
    # Not encrypted, like the error's type and message beside it.
    return serialization.dumps(info, "the step's error", sealed=False)


def rebuild(record: StepRecord) -> BaseException:
    """The stored failure as an exception to raise, of its own class. Where this process
    has no such class, or cannot build one, a `ReplayError` naming it: raising anything else
    could send the workflow down another branch than the one it recorded."""
    error_type, message = record.error_type, record.error_message
    info = serialization.loads(record.error_replay) if record.error_replay else {}
    path = info.get("class", "")
    cls = _find_class(path, error_type)
    args = serialization.loads(info["args"]) if "args" in info else [message]
    if cls is not None:
        try:
            return cls(*args)
        except Exception:
            try:
                # A constructor that wants other arguments: the class and its args, unbuilt.
                return cls.__new__(cls, *args)
            except Exception:
                pass
        return ReplayError(
            f"cannot replay the failure of step {record.name!r} at {describe(record.branch, record.position)}: "
            f"{path or error_type} could not be rebuilt from its stored arguments"
        )
    return ReplayError(
        f"cannot replay the failure of step {record.name!r} at {describe(record.branch, record.position)}: "
        f"its error class {path or error_type} is not loaded in this process "
        f"(import its module in the workflow's module); it failed with {error_type}: {message}"
    )


def _find_class(path: str, error_type: str) -> type[BaseException] | None:
    if path:
        found = _seen.get(path) or _import(path)
    else:  # a failure stored before classes were recorded
        from .. import exceptions

        found = getattr(builtins, error_type, None) or getattr(exceptions, error_type, None)
    if stops.is_failure_class(found):
        return found
    return None


def _import(path: str) -> Any:
    """The class at `path`, from a module this process has already imported: a workflow that
    catches the error has imported its class, and stored text never makes us import code."""
    module_name, _, qualname = path.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found
