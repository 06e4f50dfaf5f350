"""The durable execution engine. It imports nothing of django-q2, the admin or the API.

What the rest of the package may use lives here; the modules below are the engine's own.
"""

from .events import record_events
from .executor import execute
from .retention import purge_expired
from .runs import executor_name
from .scans import fire_alarm_now, fire_alarms, recover
from .schedules import fire_schedules

__all__ = ["execute", "executor_name", "fire_alarm_now", "fire_alarms", "fire_schedules", "purge_expired", "record_events", "recover"]
