"""Settings: one `DURABLE_WORKFLOWS` dict, read through `settings`, with every default here.

Reloaded on `setting_changed`, so `override_settings(DURABLE_WORKFLOWS=...)` works in tests.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # How long a claim on a Running instance lasts without a heartbeat or step write.
    "LEASE_SECONDS": 30,
    # How often a long step renews its lease; keep it well under LEASE_SECONDS.
    "HEARTBEAT_SECONDS": 10,
    # Recoveries of one instance without a finished step before it is Failed.
    "MAX_RECOVERY_ATTEMPTS": 3,
    # How the engine hands an instance to a worker. The default runs it on django-q2.
    "DISPATCHER": "durable_workflows.djangoq.dispatcher.DjangoQDispatcher",
    # With DISPATCHER "durable_workflows.dispatch.TasksDispatcher": the TASKS alias (a
    # django.tasks backend other than DurableTaskBackend) whose workers run the instances.
    "TASKS_BACKEND": "default",
    # Stores inputs, step results and outputs. Needs `dumps(obj) -> str` and `loads(str)`.
    "SERIALIZER": "durable_workflows.serialization.JSONSerializer",
    # Encrypts inputs, results, step results, event payloads and meta at rest:
    # "durable_workflows.codecs.FernetCodec" (the [encryption] extra) or a Codec of one's own.
    "CODEC": None,
    # The codec's keys, newest first: new values are sealed with the first, any of them opens.
    "CODEC_KEYS": [],
    # Queued instances nobody claimed, or fired alarms nobody resumed, for this long are
    # dispatched again (the broker may have lost the task).
    "REDISPATCH_AFTER_SECONDS": 60,
    # How often the in-worker ticker looks for due alarms, and for stale leases and lost tasks.
    "ALARM_POLL_SECONDS": 0.2,
    "RECOVERY_POLL_SECONDS": 1.0,
    # Run the ticker thread inside each qcluster worker process; one of them per cluster, the
    # holder of the cluster's ticker lease, does the periodic work.
    "WORKER_TICKER": True,
    # How the ticker learns that an alarm is due: "notify" (PostgreSQL with psycopg 3: LISTEN,
    # woken the moment an alarm is committed, and a slow poll; polling elsewhere) or "poll"
    # (every ALARM_POLL_SECONDS; set it behind PgBouncer in transaction mode).
    "WAKEUP": "notify",
    # django-q2 options passed to async_task (for example {"cluster": "workflows"}).
    "Q_OPTIONS": {},
    # Import strings of the DRF permission classes guarding the REST API. The default lets in
    # active staff users holding the model permission of what they do, as the admin does.
    "API_PERMISSION_CLASSES": ["durable_workflows.api.permissions.IsStaff"],
    # Who may read the Prometheus metrics (durable_workflows.metrics.urls): None, the same
    # classes as the API; [] lets anyone read them.
    "METRICS_PERMISSION_CLASSES": None,
    # Keep each lifecycle event as a row of the event log (signals are sent either way).
    "EVENT_LOG": True,
    # PostgreSQL: send the engine's hot statements (fresh claim, checkpoint, final transition)
    # as prepared statements, planned once per connection. Turn off behind a pooler that
    # cannot keep prepared statements (PgBouncer in transaction mode before 1.21).
    "PREPARED_STATEMENTS": True,
    # PostgreSQL: send a fresh claim, a step's checkpoint and the final transition as one
    # statement each (data-modifying CTEs). False sends them through the ORM, as elsewhere.
    "SINGLE_STATEMENT_WRITES": True,
    # Finished instances older than this are deleted, with their steps and events, by the
    # workers' periodic work (purge_expired); None keeps them. @workflow(purge_after=) wins.
    "PURGE_AFTER": None,
    # The database alias of our tables: every query, transaction and raw statement of the
    # library uses it, so a project that keeps them on another database stays atomic.
    "DATABASE": "default",
    # Named step limiters, {"stripe": "25/s"}: a step with limiter="stripe" takes a unit
    # before each attempt, at most so many in any window of the period, across clusters.
    "LIMITERS": {},
}

IMPORT_STRINGS = {"DISPATCHER", "SERIALIZER"}
#: The values WAKEUP takes.
WAKEUPS = ("poll", "notify")


class Settings:
    """Attribute access to the merged settings, with import strings resolved lazily."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def _user(self) -> dict[str, Any]:
        value = getattr(django_settings, "DURABLE_WORKFLOWS", None) or {}
        if not isinstance(value, dict):
            raise TypeError("settings.DURABLE_WORKFLOWS must be a dict")
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._cache:
            return self._cache[name]
        if name not in DEFAULTS:
            raise AttributeError(f"unknown durable_workflows setting {name!r}")
        user = self._user()
        unknown = set(user) - set(DEFAULTS)
        if unknown:
            raise AttributeError(
                f"unknown key(s) in settings.DURABLE_WORKFLOWS: {', '.join(sorted(unknown))}"
            )
        value = user.get(name, DEFAULTS[name])
        if name in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        self._cache[name] = value
        # Later reads find the attribute directly, without __getattr__ (hot on replay).
        self.__dict__[name] = value
        return value

    def reload(self) -> None:
        for name in self._cache:
            self.__dict__.pop(name, None)
        self._cache.clear()


settings = Settings()


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "DURABLE_WORKFLOWS":
        settings.reload()
