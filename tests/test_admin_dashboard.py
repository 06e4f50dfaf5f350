"""The admin dashboard and the instance timeline: what they show comes from stored data, is
escaped, and renders with nothing, a little and (estimated) a lot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from durable_workflows import client, counting, fire_alarms, workflow
from durable_workflows.models import Alarm, StepRecord, WorkflowInstance
from durable_workflows.registry import unregister

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = reverse("admin:durable_workflows_workflowinstance_dashboard")
LIST_URL = reverse("admin:durable_workflows_workflowinstance_changelist")
INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}


def page(admin_client, url: str) -> str:
    response = admin_client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_the_dashboard_of_an_empty_database(admin_client):
    text = page(admin_client, DASHBOARD)
    assert '<svg class="dw-chart"' in text
    assert "None: every Running instance has a live lease." in text
    assert "No step has finished yet." in text and "No sleep has ended yet." in text


def test_the_dashboard_shows_failures_slow_steps_lag_and_stuck_instances(admin_client):
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        done = client.start("tests.greet", "Ada")
        failed = client.start("tests.flaky", 5, max_attempts=1)
        nap = client.start("tests.nap", "1h")
        alarm = Alarm.objects.get(instance_id=nap.instance_id)
        Alarm.objects.filter(instance_id=nap.instance_id).update(fire_at=alarm.fire_at - timedelta(hours=1, minutes=2))
        fire_alarms()
    assert client.get(nap.instance_id).state == "completed"
    StepRecord.objects.filter(instance_id=done.instance_id).update(
        started_at=timezone.now() - timedelta(minutes=7), finished_at=timezone.now())
    stuck = client.start("tests.greet", "Grace", instance_id="stuck-one")
    WorkflowInstance.objects.filter(pk=stuck.instance_id).update(
        state="running", lease_owner="gone:1:1", lease_expires_at=timezone.now() - timedelta(minutes=3))

    text = page(admin_client, DASHBOARD)
    stuck_part = text[text.index('id="dw-stuck"'):text.index('id="dw-slowest"')]
    assert "stuck-one" in stuck_part and "gone:1:1" in stuck_part and "3 min ago" in stuck_part
    slowest = text[text.index('id="dw-slowest"'):text.index('id="dw-lag"')]
    body = slowest[slowest.index("<tbody>"):]
    first_row = body[:body.index("</tr>")]
    assert "Compose" in first_row and "7 min" in first_row and done.instance_id in first_row
    lag = text[text.index('id="dw-lag"'):]
    assert nap.instance_id in lag and "tests.nap" in lag
    # The hourly chart counts this hour's starts and failures.
    assert ">4 starts: 4<" not in text and "starts: 4</title>" in text and "failures: 1</title>" in text
    assert failed.instance_id not in stuck_part


def test_stored_text_is_escaped_in_the_timeline_and_the_dashboard(admin_client):
    @workflow("tests.admin.scripted")
    def scripted(wf):
        return wf.step("<script>alert(1)</script>", lambda: "<b>bold</b>")

    try:
        with override_settings(DURABLE_WORKFLOWS=INLINE):
            handle = client.start("tests.admin.scripted")
        for url in (DASHBOARD, reverse("admin:durable_workflows_workflowinstance_change", args=[handle.instance_id])):
            text = page(admin_client, url)
            assert "<script>alert(1)</script>" not in text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    finally:
        unregister("tests.admin.scripted")


def test_the_instance_page_draws_its_steps_and_waits_as_bars(admin_client):
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        flaky = client.start("tests.flaky", 1, max_attempts=3)
        nap = client.start("tests.nap", "1h")
    text = page(admin_client, reverse("admin:durable_workflows_workflowinstance_change", args=[flaky.instance_id]))
    chart = text[text.index('<svg class="dw-chart dw-timeline-chart"'):]
    chart = chart[:chart.index("</svg>")]
    assert 'class="dw-bar-ok"' in chart and "2 attempts" in chart and "0 Sometimes" in chart
    text = page(admin_client, reverse("admin:durable_workflows_workflowinstance_change", args=[nap.instance_id]))
    chart = text[text.index('<svg class="dw-chart dw-timeline-chart"'):]
    assert 'class="dw-bar-sleep"' in chart[:chart.index("</svg>")]


def test_counts_past_the_threshold_are_estimated_and_say_so(admin_client, monkeypatch):
    for n in range(6):
        client.start("tests.nap", "1h", instance_id=f"many-{n}")
    monkeypatch.setattr(counting, "EXACT_UP_TO", 3)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {WorkflowInstance._meta.db_table}")
    text = page(admin_client, LIST_URL)
    if connection.vendor == "postgresql":
        assert "≈" in text and "PostgreSQL's estimates" in text
    else:
        assert "≈" not in text and "<strong>6</strong>" in text  # SQLite counts exactly
    assert "many-5" in text
    assert page(admin_client, DASHBOARD)


def test_the_dashboard_needs_the_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(DASHBOARD).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_workflowinstance"))
    assert client.get(DASHBOARD).status_code == 200
    assert 'href="/admin/durable_workflows/workflowinstance/dashboard/"' in client.get(LIST_URL).content.decode()
