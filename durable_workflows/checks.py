"""System checks for settings that work in development and fail under load."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core import checks

from .conf import DEFAULTS


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    user = getattr(django_settings, "DURABLE_WORKFLOWS", {}) or {}
    if not isinstance(user, dict):
        return [checks.Error("DURABLE_WORKFLOWS must be a dict", id="durable_workflows.E001")]
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        messages.append(
            checks.Error(
                f"unknown key(s) in DURABLE_WORKFLOWS: {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(DEFAULTS))}",
                id="durable_workflows.E002",
            )
        )
    lease = user.get("LEASE_SECONDS", DEFAULTS["LEASE_SECONDS"])
    beat = user.get("HEARTBEAT_SECONDS", DEFAULTS["HEARTBEAT_SECONDS"])
    if beat >= lease:
        messages.append(
            checks.Error(
                "DURABLE_WORKFLOWS HEARTBEAT_SECONDS must be shorter than LEASE_SECONDS",
                hint="a lease that expires between heartbeats lets a second worker take over a live run",
                id="durable_workflows.E003",
            )
        )
    alias = user.get("DATABASE", DEFAULTS["DATABASE"])
    if alias not in django_settings.DATABASES:
        messages.append(
            checks.Error(
                f"DURABLE_WORKFLOWS DATABASE is {alias!r}, which is not in DATABASES",
                hint=f"name one of: {', '.join(sorted(django_settings.DATABASES))}",
                id="durable_workflows.E004",
            )
        )
        return messages
    from .database import routed_elsewhere

    routed = routed_elsewhere()
    if routed is not None:
        messages.append(
            checks.Error(
                f"the project's routers send durable_workflows' tables to {routed!r}, but "
                f"DURABLE_WORKFLOWS DATABASE is {alias!r}",
                hint=f"set DURABLE_WORKFLOWS['DATABASE'] = {routed!r}: every query, transaction and "
                     "raw statement of the library goes to that one alias",
                id="durable_workflows.E005",
            )
        )
    database = django_settings.DATABASES.get(alias, {})
    q_cluster = getattr(django_settings, "Q_CLUSTER", {}) or {}
    if database.get("ENGINE", "").endswith("sqlite3") and not q_cluster.get("sync"):
        options = database.get("OPTIONS", {})
        if options.get("transaction_mode") != "IMMEDIATE":
            messages.append(
                checks.Warning(
                    "SQLite with qcluster workers: set OPTIONS transaction_mode to IMMEDIATE",
                    hint=f'DATABASES["{alias}"]["OPTIONS"] = {{"transaction_mode": "IMMEDIATE", '
                    '"timeout": 20}; with deferred transactions concurrent workers hit '
                    '"database is locked".',
                    id="durable_workflows.W001",
                )
            )
    return messages
