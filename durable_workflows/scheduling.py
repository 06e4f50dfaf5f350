"""django-q2 Schedule rows that keep alarm firing and recovery going as a backstop.

The ticker thread in each worker (`durable_workflows.djangoq.ticker`) does this work within a second;
these rows make sure it happens at least every minute or so even without it (WORKER_TICKER
off, or a ticker that died), and their tasks restart a missing ticker in the worker that
runs them. `ensure_schedules()` runs after `migrate` and from `manage.py durable_workflows
setup`.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_migrate

from .conf import settings

# The task functions by their first path (durable_workflows.tasks), which a worker of any
# release can import: rows are shared by every cluster, old and new, in a rolling deploy.
SCHEDULES = {
    "durable_workflows.fire_alarms": "durable_workflows.tasks.fire_alarms_task",
    "durable_workflows.recover": "durable_workflows.tasks.recover_task",
}


def ensure_schedules(using: str = "default") -> list[str]:
    """Create or repair the Schedule rows; safe to run any number of times.

    Returns the names of the rows it created. A row that exists is brought back to what it
    should be (function, every minute, repeating forever, on the cluster Q_OPTIONS names)
    without moving its next run; duplicates of a name are removed.
    """
    from django_q.models import Schedule

    cluster = (settings.Q_OPTIONS or {}).get("cluster")
    wanted = {
        "schedule_type": Schedule.MINUTES,
        "minutes": 1,
        "repeats": -1,
        "cluster": cluster,
    }
    created = []
    with transaction.atomic(using=using):
        for name, func in SCHEDULES.items():
            rows = list(Schedule.objects.using(using).filter(name=name).order_by("pk"))
            if not rows:
                Schedule.objects.using(using).create(name=name, func=func, **wanted)
                created.append(name)
                continue
            keep, extra = rows[0], rows[1:]
            if extra:
                Schedule.objects.using(using).filter(pk__in=[row.pk for row in extra]).delete()
            changes = {key: value for key, value in {"func": func, **wanted}.items()
                       if getattr(keep, key) != value}
            if changes:
                Schedule.objects.using(using).filter(pk=keep.pk).update(**changes)
    return created


def _after_migrate(sender: Any, app_config: Any = None, using: str = "default", **kwargs: Any) -> None:
    if app_config is None or app_config.label != "durable_workflows":
        return
    from django.db import connections

    tables = connections[using].introspection.table_names()
    if "django_q_schedule" in tables:
        ensure_schedules(using)


def connect() -> None:
    """Called from the app's ready(): schedules after migrate, the ticker in each worker."""
    from .djangoq import ticker

    post_migrate.connect(_after_migrate, dispatch_uid="durable_workflows.schedules")
    ticker.connect()
