"""The durable execution engine. It imports nothing of django-q2, the admin or the API.

What the rest of the package may use lives here; the modules below are the engine's own.
The names are imported on first use, so that a module of the engine can be imported without
the rest of it: `durable_workflows.dispatch`, which the engine's modules import, builds on
`engine.ports`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import exports

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


__getattr__ = exports(globals(), _EXPORTS)
