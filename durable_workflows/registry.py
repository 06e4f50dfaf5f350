"""The workflow registry: `@workflow` puts a function here under its name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, TypeVar, overload

from .cron import CronSchedule
from .durations import parse_duration
from .exceptions import UnknownWorkflow
from .rates import Rate, parse_rate
from .start_options import check_priority

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    description: str
    #: The deadline of each instance, in seconds from its creation (None: none).
    timeout: float | None = None
    #: The timeout as the decorator was given it, when as text ("30 days"), for messages.
    timeout_text: str | None = None
    #: How long a finished instance is kept, in seconds (None: the PURGE_AFTER setting).
    purge_after: float | None = None
    #: When the workers start an instance of it on their own (None: never).
    schedule: CronSchedule | None = None
    #: At most this many instances (per value of `concurrency_key`) hold a slot at once.
    concurrency: int | None = None
    concurrency_key: str | None = None
    #: The priority of its instances when their start gives none (-100..100, larger first).
    priority: int = 0
    #: At most so many first claims (per value of `rate_key`) in any window of its period.
    rate_limit: Rate | None = None
    rate_key: str | None = None

    @property
    def module(self) -> str:
        return self.fn.__module__

    @cached_property
    def signature(self) -> inspect.Signature:
        """The function's signature, worked out once: every start checks its arguments."""
        return inspect.signature(self.fn)

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse arguments the function could not be called with, before anything is stored."""
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"workflow {self.name!r} cannot take these arguments: {exc}") from None

    def parameters(self) -> list[str]:
        return list(self.signature.parameters)[1:]


_registry: dict[str, WorkflowDefinition] = {}


@overload
def workflow(name_or_fn: F) -> F: ...


@overload
def workflow(name_or_fn: str | None = None, *, name: str | None = None,
             timeout: timedelta | int | float | str | None = None,
             purge_after: timedelta | int | float | str | None = None,
             schedule: str | Sequence[str] | None = None, schedule_tz: str | None = None,
             concurrency: int | None = None, concurrency_key: str | None = None,
             priority: int = 0, rate_limit: str | None = None, rate_key: str | None = None) -> Callable[[F], F]: ...


def workflow(name_or_fn: Any = None, *, name: str | None = None,
             timeout: timedelta | int | float | str | None = None,
             purge_after: timedelta | int | float | str | None = None,
             schedule: str | Sequence[str] | None = None, schedule_tz: str | None = None,
             concurrency: int | None = None, concurrency_key: str | None = None,
             priority: int = 0, rate_limit: str | None = None, rate_key: str | None = None) -> Any:
    """Register a function as a workflow: `@workflow`, `@workflow()` or `@workflow("order")`.

    The name is what instances store, so renaming a workflow strands its running instances:
    give long-lived workflows an explicit name. It defaults to "<module>.<function>". Two
    module-level functions cannot share a name; a function defined inside another one (as
    tests do) replaces an earlier registration of its name.
    """
    options: dict[str, Any] = {
        "timeout": None if timeout is None else parse_duration(timeout, what="workflow timeout").total_seconds(),
        "timeout_text": timeout.strip() if isinstance(timeout, str) else None,
        "purge_after": None if purge_after is None else _purge_after(name or name_or_fn, purge_after),
        "concurrency": concurrency,
        "concurrency_key": concurrency_key,
        "rate_limit": rate_limit,
        "rate_key": rate_key,
        "schedule": schedule,
        "schedule_tz": schedule_tz,
        "priority": _priority(name or name_or_fn, priority),
    }
    if callable(name_or_fn) and name is None:
        return _register(name_or_fn, None, **options)
    if name_or_fn is not None and name is not None:
        raise TypeError("give the workflow name once, positionally or as name=")
    chosen = name if name is not None else name_or_fn
    if chosen is not None and (not isinstance(chosen, str) or not chosen.strip()):
        raise TypeError(f"a workflow name must be non-empty text, got {chosen!r}")
    if chosen is not None and (len(chosen) > 255 or "\x00" in chosen):
        raise ValueError(f"a workflow name must be at most 255 characters, without NUL, got {chosen!r}")

    def decorator(fn: F) -> F:
        return _register(fn, chosen, **options)

    return decorator


def _priority(named: Any, value: Any) -> int:
    try:
        return check_priority(value)
    except ValueError as error:
        raise ValueError(f"workflow {getattr(named, '__qualname__', named)!r}: {error}") from None


def _purge_after(named: Any, value: Any) -> float:
    label = getattr(named, "__qualname__", named)
    try:
        return parse_duration(value, what="purge_after").total_seconds()
    except (TypeError, ValueError) as error:
        raise ValueError(f"workflow {label!r}: {error}") from None


def _register(fn: F, name: str | None, *, timeout: float | None = None, timeout_text: str | None = None,
              purge_after: float | None = None,
              schedule: str | Sequence[str] | None = None, schedule_tz: str | None = None,
              concurrency: int | None = None, concurrency_key: str | None = None, priority: int = 0,
              rate_limit: str | None = None, rate_key: str | None = None) -> F:
    if not callable(fn):
        raise TypeError(f"@workflow decorates a function, got {fn!r}")
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(
            f"workflow function {fn.__qualname__} must take the workflow context as its "
            f"first argument, e.g. def {fn.__name__}(wf, ...)"
        )
    # "<module>.<function>", also for a function defined inside another (as tests do).
    name = name or f"{fn.__module__}.{fn.__name__}"
    existing = _registry.get(name)
    if (
        existing is not None
        and _origin(existing.fn) != _origin(fn)
        and "<locals>" not in existing.fn.__qualname__ + fn.__qualname__
    ):
        raise ValueError(
            f"workflow name {name!r} is already registered by "
            f"{existing.fn.__module__}.{existing.fn.__qualname__}"
        )
    if schedule_tz is not None and schedule is None:
        raise ValueError(f"workflow {name!r}: schedule_tz is given without a schedule")
    cron = None if schedule is None else CronSchedule.parse(name, schedule, schedule_tz)
    if cron is not None:
        _check_no_arguments(name, fn)
    _check_concurrency(name, fn, concurrency, concurrency_key)
    rate = _check_rate(name, fn, rate_limit, rate_key)
    definition = WorkflowDefinition(
        name=name,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        description=inspect.getdoc(fn) or "",
        timeout=timeout,
        timeout_text=timeout_text,
        purge_after=purge_after,
        schedule=cron,
        concurrency=concurrency,
        concurrency_key=concurrency_key,
        priority=priority,
        rate_limit=rate,
        rate_key=rate_key,
    )
    _registry[name] = definition
    # Attributes set on the user's function: no function type declares them.
    fn.workflow_name = name  # type: ignore[attr-defined]
    fn.durable_workflow = definition  # type: ignore[attr-defined]
    return fn


def _check_no_arguments(name: str, fn: Callable[..., Any]) -> None:
    """A scheduled instance is started with no arguments: the function must take none."""
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        raise ValueError(
            f"workflow {name!r} has a schedule, so it is started without arguments; "
            f"give its parameters after `wf` default values"
        ) from None


def _check_concurrency(name: str, fn: Callable[..., Any], limit: Any, key: Any) -> None:
    if limit is None:
        if key is not None:
            raise ValueError(f"workflow {name!r}: concurrency_key is given without concurrency=N")
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"workflow {name!r}: concurrency must be a whole number of at least 1, got {limit!r}")
    _check_key(name, fn, "concurrency_key", key)


def _check_rate(name: str, fn: Callable[..., Any], limit: Any, key: Any) -> Rate | None:
    if limit is None:
        if key is not None:
            raise ValueError(f"workflow {name!r}: rate_key is given without rate_limit=")
        return None
    rate = parse_rate(limit, f"workflow {name!r}: rate_limit")
    _check_key(name, fn, "rate_key", key)
    return rate


def _check_key(name: str, fn: Callable[..., Any], option: str, key: Any) -> None:
    """A limit counted per argument names a parameter of the function."""
    if key is None:
        return
    parameters = list(inspect.signature(fn).parameters)[1:]
    if not isinstance(key, str) or key not in parameters:
        raise ValueError(
            f"workflow {name!r}: {option} {key!r} is not a parameter of the function "
            f"(its parameters: {', '.join(parameters) or 'none'})"
        )


def _origin(fn: Callable[..., Any]) -> tuple[str, str]:
    return (fn.__module__, fn.__qualname__)


def get_definition(workflow: str | Callable[..., Any] | WorkflowDefinition) -> WorkflowDefinition:
    """Find a registered workflow by name, by its function, or pass a definition through."""
    if isinstance(workflow, WorkflowDefinition):
        return workflow
    if callable(workflow):
        name = getattr(workflow, "workflow_name", None)
        if name is None:
            raise UnknownWorkflow(
                f"{getattr(workflow, '__qualname__', workflow)!r} is not a registered workflow; "
                f"decorate it with @workflow"
            )
        workflow = name
    if not isinstance(workflow, str):
        raise UnknownWorkflow(f"{workflow!r} is not a workflow name")
    try:
        return _registry[workflow]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none are registered"
        raise UnknownWorkflow(f"unknown workflow {workflow!r} (registered: {known})") from None


def registered(name: str) -> WorkflowDefinition | None:
    """The definition registered under `name`, if any (no error: for messages and reports)."""
    return _registry.get(name)


def all_definitions() -> list[WorkflowDefinition]:
    return [_registry[name] for name in sorted(_registry)]


def unregister(name: str) -> None:
    """Remove a workflow; for tests that define workflows of their own."""
    _registry.pop(name, None)
