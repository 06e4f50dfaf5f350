"""DURABLE_WORKFLOWS["DATABASE"]: a project that keeps our tables on another database gets
every query, transaction and raw statement there, so its runs stay atomic."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from durable_workflows import client
from durable_workflows.engine import fire_alarm_now, recover
from durable_workflows.models import Event
from tests.testapp.fault_workflows import RAN
from tests.testapp.models import Ledger

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

OTHER = {"DATABASE": "other"}


def _raw_count(alias: str, table: str, instance_id: str) -> int:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        column = "id" if table.endswith("workflowinstance") else "instance_id"
        cursor.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", [instance_id])
        return cursor.fetchone()[0]


def test_a_run_on_another_alias_writes_there_and_nowhere_else():
    with override_settings(DURABLE_WORKFLOWS=OTHER):
        handle = client.start("engine.between", "1h")
        assert handle.refresh().state == "paused"
        assert fire_alarm_now(handle.instance_id)
        assert recover() == []
        done = client.get(handle.instance_id)
        assert done.result() == 2 and [s.state for s in done.steps] == ["completed", "completed", "completed"]
        assert Event.objects.filter(instance_id=handle.instance_id, kind="workflow.completed").exists()
    pk = handle.instance_id
    assert _raw_count("other", "durable_workflows_workflowinstance", pk) == 1
    assert _raw_count("other", "durable_workflows_steprecord", pk) == 3
    assert _raw_count("other", "durable_workflows_event", pk) > 0
    for table in ("workflowinstance", "steprecord", "event", "alarm"):
        assert _raw_count("default", f"durable_workflows_{table}", pk) == 0, table


def test_an_atomic_step_on_another_alias_commits_with_its_record_there():
    with override_settings(DURABLE_WORKFLOWS=OTHER):
        handle = client.start("atomic.book_on", "other", "routed")
        assert handle.refresh().result() == 1  # the failed first attempt's row was rolled back
    assert RAN["routed"] == 2
    assert Ledger.objects.using("other").filter(key="routed").count() == 1
    assert _raw_count("other", "durable_workflows_steprecord", handle.instance_id) == 1


class RouteUsToOther:
    def db_for_write(self, model, **hints):
        return "other" if model._meta.app_label == "durable_workflows" else None


def test_routers_that_send_our_tables_elsewhere_than_database_are_refused():
    with override_settings(DATABASE_ROUTERS=[RouteUsToOther()]):
        errors = [m for m in checks.run_checks() if m.id == "durable_workflows.E005"]
        assert errors and "'other'" in errors[0].msg and "'default'" in errors[0].msg
        handle = client.start("atomic.book_on", "default", "misrouted")
        assert handle.refresh().state == "failed"
        assert "the project's routers send durable_workflows' tables to 'other'" in handle.error["message"]
        with override_settings(DURABLE_WORKFLOWS=OTHER):
            assert not [m for m in checks.run_checks() if m.id == "durable_workflows.E005"]


def test_an_unknown_alias_is_named_by_the_system_check():
    with override_settings(DURABLE_WORKFLOWS={"DATABASE": "nowhere"}):
        errors = [m for m in checks.run_checks() if m.id == "durable_workflows.E004"]
    assert errors and "'nowhere'" in errors[0].msg and "default" in errors[0].hint
