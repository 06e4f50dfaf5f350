"""The durable execution engine. It imports nothing of django-q2, the admin or the API.

What the rest of the package may use lives here; the modules below are the engine's own.
The names are imported on first use, so that a module of the engine can be imported without
the rest of it: `durable_workflows.dispatch`, which the engine's modules import, builds on
`engine.ports`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "execute": "executor",
    "executor_name": "runs",
    "fire_alarm_now": "scans",
    "fire_alarms": "scans",
    "fire_schedules": "schedules",
    "purge_expired": "retention",
    "record_events": "events",
    "recover": "scans",
}

__all__ = ["execute", "executor_name", "fire_alarm_now", "fire_alarms", "fire_schedules", "purge_expired", "record_events", "recover"]

if TYPE_CHECKING:
    from .events import record_events
    from .executor import execute
    from .retention import purge_expired
    from .runs import executor_name
    from .scans import fire_alarm_now, fire_alarms, recover
    from .schedules import fire_schedules


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
