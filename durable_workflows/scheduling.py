"""django-q2 Schedule rows that keep alarm firing and recovery going as a backstop."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_migrate

SCHEDULES = {
    "durable_workflows.fire_alarms": "durable_workflows.tasks.fire_alarms_task",
    "durable_workflows.recover": "durable_workflows.tasks.recover_task",
}


def ensure_schedules() -> list[str]:
    """Create or repair the Schedule rows; safe to run any number of times."""
    from django_q.models import Schedule

    created = []
    for name, func in SCHEDULES.items():
        _, made = Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
        )
        if made:
            created.append(name)
    return created


def _after_migrate(sender: Any, app_config: Any = None, using: str = "default", **kwargs: Any) -> None:
    if app_config is None or app_config.label != "durable_workflows":
        return
    from django.db import connections

    tables = connections[using].introspection.table_names()
    if "django_q_schedule" in tables:
        ensure_schedules()


def connect() -> None:
    post_migrate.connect(_after_migrate, dispatch_uid="durable_workflows.schedules")
