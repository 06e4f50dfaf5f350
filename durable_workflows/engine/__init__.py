"""The durable execution engine. It imports nothing of django-q2, the admin or the API."""

from .executor import execute
from .scans import fire_alarm_now, fire_alarms, recover

__all__ = ["execute", "fire_alarms", "fire_alarm_now", "recover"]
