"""Scheduled workflows: one instance per fire time whatever the number of passes, only the
latest missed time after downtime, and a clear error for a schedule that cannot be read."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from datetime import timezone as tz

import pytest
from django.test import override_settings

from durable_workflows import State, client, fire_schedules, registry, workflow
from durable_workflows.engine.schedules import fire_id, next_fire
from durable_workflows.models import ScheduleFire, WorkflowInstance
from durable_workflows.registry import get_definition, unregister
from tests.helpers import in_thread

pytestmark = pytest.mark.django_db(transaction=True)

INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}
RAN: list[str] = []


@pytest.fixture(autouse=True)
def only_these_schedules():
    """Other tests may have registered scheduled workflows (the example project's report):
    they stay out of these passes."""
    others = {name: d for name, d in registry._registry.items() if d.schedule is not None}
    for name in others:
        unregister(name)
    yield
    registry._registry.update(others)


@pytest.fixture
def nightly():
    @workflow("sched.nightly", schedule="0 2 * * *", schedule_tz="UTC")
    def nightly_report(wf):
        RAN.append(wf.instance_id)
        return wf.step("Report", lambda: "done")

    RAN.clear()
    yield nightly_report
    unregister("sched.nightly")


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=tz.utc)


def instances() -> list[str]:
    return sorted(WorkflowInstance.objects.filter(workflow="sched.nightly").values_list("pk", flat=True))


def test_a_due_fire_time_starts_one_instance_that_runs(nightly):
    with override_settings(DURABLE_WORKFLOWS=INLINE):
        assert fire_schedules(now=at(10, 1, 59)) == [fire_id("sched.nightly", at(9, 2))]
        started = fire_schedules(now=at(10, 2, 0))  # a fire time equal to now has come
    assert started == ["sched.nightly@2026-03-10T02:00:00Z"]
    assert client.get(started[0]).state == State.COMPLETED
    assert RAN == ["sched.nightly@2026-03-09T02:00:00Z", "sched.nightly@2026-03-10T02:00:00Z"]
    assert fire_schedules(now=at(10, 14)) == []  # nothing new until tomorrow 02:00
    assert ScheduleFire.objects.get(workflow="sched.nightly").last_fire_at == at(10, 2)


def test_after_downtime_only_the_latest_missed_time_runs(nightly):
    assert fire_schedules(now=at(1, 2, 5)) == ["sched.nightly@2026-03-01T02:00:00Z"]
    # Three nights missed: only last night's report is started.
    assert fire_schedules(now=at(4, 9)) == ["sched.nightly@2026-03-04T02:00:00Z"]
    assert instances() == ["sched.nightly@2026-03-01T02:00:00Z", "sched.nightly@2026-03-04T02:00:00Z"]
    # A pass that comes late with an older clock does not go back.
    assert fire_schedules(now=at(3, 9)) == []


def test_two_passes_at_once_start_one_instance_per_fire_time(nightly):
    barrier = threading.Barrier(4)
    results: list[list[str]] = []

    def one_pass() -> None:
        barrier.wait(timeout=10)
        results.append(fire_schedules(now=at(5, 2, 1)))

    threads = [in_thread(one_pass) for _ in range(4)]
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results, key=len) == [[], [], [], ["sched.nightly@2026-03-05T02:00:00Z"]]
    assert instances() == ["sched.nightly@2026-03-05T02:00:00Z"]


def test_a_purged_instance_is_not_started_again(nightly):
    started = fire_schedules(now=at(6, 3))
    WorkflowInstance.objects.filter(pk__in=started).delete()
    assert fire_schedules(now=at(6, 4)) == []
    assert instances() == []


def test_schedule_times_are_read_in_the_schedule_zone():
    @workflow("sched.local", schedule=["0 2 * * *", "30 12 * * 1-5"], schedule_tz="America/New_York")
    def local_report(wf):
        return None

    try:
        # 2026-03-09 is a Monday, the day after New York moved to daylight-saving time (UTC-4).
        assert fire_schedules(now=datetime(2026, 3, 9, 6, 30, tzinfo=tz.utc)) == ["sched.local@2026-03-09T06:00:00Z"]
        assert fire_schedules(now=datetime(2026, 3, 9, 16, 30, tzinfo=tz.utc)) == ["sched.local@2026-03-09T16:30:00Z"]
        definition = get_definition("sched.local")
        assert next_fire(definition, datetime(2026, 3, 9, 16, 30, tzinfo=tz.utc)) == datetime(
            2026, 3, 10, 6, 0, tzinfo=tz.utc)
        assert get_definition("sched.local").schedule.describe() == "0 2 * * * | 30 12 * * 1-5 (America/New_York)"
    finally:
        unregister("sched.local")


# -- across daylight-saving changes ----------------------------------------------------------------

HOUR = timedelta(hours=1)


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=tz.utc)


# Each change of 2026: when it happens (UTC), a daily expression at a local time the change
# skips or repeats, and when that expression fires the day before and on the day.
CLOCK_CHANGES = {
    # 02:00 CET -> 03:00 CEST: 02:30 does not occur, it fires when the clocks jump (03:00 CEST).
    "Paris, spring forward": ("Europe/Paris", utc(3, 29, 1), "30 2 * * *", [utc(3, 28, 1, 30), utc(3, 29, 1)]),
    # 03:00 CEST -> 02:00 CET: 02:30 occurs twice, it fires at the first (02:30 CEST).
    "Paris, fall back": ("Europe/Paris", utc(10, 25, 1), "30 2 * * *", [utc(10, 24, 0, 30), utc(10, 25, 0, 30)]),
    # 02:00 EST -> 03:00 EDT.
    "New York, spring forward": ("America/New_York", utc(3, 8, 7), "30 2 * * *", [utc(3, 7, 7, 30), utc(3, 8, 7)]),
    # 02:00 EDT -> 01:00 EST: 01:30 occurs twice, it fires at the first (01:30 EDT).
    "New York, fall back": ("America/New_York", utc(11, 1, 6), "30 1 * * *", [utc(10, 31, 5, 30), utc(11, 1, 5, 30)]),
}


@pytest.mark.parametrize("change", CLOCK_CHANGES)
def test_schedules_across_daylight_saving_changes_fire_once_per_fire_time_in_order(change):
    """A clock stepped minute by minute through the change, three hours either side: every
    hour and every half hour of real time fires once, the daily time once, in increasing order."""
    zone, changes_at, daily, daily_fires = CLOCK_CHANGES[change]
    schedules = {"sched.hourly": "0 * * * *", "sched.halfhourly": "*/30 * * * *", "sched.daily": daily}
    for name, expression in schedules.items():
        workflow(name, schedule=expression, schedule_tz=zone)(lambda wf: None)
    first, last = changes_at - 3 * HOUR, changes_at + 3 * HOUR
    expected = {
        "sched.hourly": [first + k * HOUR for k in range(7)],
        "sched.halfhourly": [first + k * HOUR / 2 for k in range(13)],
        "sched.daily": daily_fires,
    }
    try:
        fired: dict[str, list[str]] = {name: [] for name in schedules}
        now = first
        while now <= last:
            for instance_id in fire_schedules(now=now):
                fired[instance_id.split("@")[0]].append(instance_id)
            for name, times in expected.items():
                upcoming = [t for t in times if t > now]
                if upcoming:  # what the admin, the API and the command show as the next fire time
                    assert next_fire(get_definition(name), now) == upcoming[0], (name, now)
            now += timedelta(minutes=1)
        for name, times in expected.items():
            ids = [fire_id(name, t) for t in times]
            # Started in this order, each once: fire times strictly increasing in UTC.
            assert fired[name] == ids, name
            assert sorted(WorkflowInstance.objects.filter(workflow=name).values_list("pk", flat=True)) == sorted(ids)
    finally:
        for name in schedules:
            unregister(name)


def test_a_list_fires_at_the_union_of_its_times_through_a_fall_back():
    """New York repeats 01:00-02:00 on 2026-11-01: the local hours 1 to 3 fire once each, at
    01:00 EDT, 02:00 EST and 03:00 EST; a quarter past and to every hour fire in real time."""
    @workflow("sched.union", schedule=["0 1-3 * * *", "15,45 * * * *"], schedule_tz="America/New_York")
    def union(wf):
        return None

    try:
        fired = []
        now = utc(11, 1, 4, 50)
        while now <= utc(11, 1, 8):
            fired += [instance_id.split("@")[1] for instance_id in fire_schedules(now=now)]
            now += timedelta(minutes=5)
        assert fired == [
            "2026-11-01T04:45:00Z",  # 00:45 EDT, the latest at the first pass
            "2026-11-01T05:00:00Z", "2026-11-01T05:15:00Z", "2026-11-01T05:45:00Z",  # 01:00, 01:15, 01:45 EDT
            "2026-11-01T06:15:00Z", "2026-11-01T06:45:00Z",  # 01:15, 01:45 EST; 01:00 EST is a repeat
            "2026-11-01T07:00:00Z", "2026-11-01T07:15:00Z", "2026-11-01T07:45:00Z",  # 02:00, 02:15, 02:45 EST
            "2026-11-01T08:00:00Z",  # 03:00 EST
        ]
    finally:
        unregister("sched.union")


def test_a_workflow_without_schedule_has_no_next_fire_time():
    assert next_fire(get_definition("tests.greet")) is None


@pytest.mark.parametrize("options, says", [
    ({"schedule": "61 * * * *"}, r"workflow 'sched.bad': '61 \* \* \* \*' is not a valid cron expression"),
    ({"schedule": "every night"}, "'every night' is not a valid cron expression"),
    ({"schedule": []}, "workflow 'sched.bad': schedule is empty"),
    ({"schedule": "0 2 * * *", "schedule_tz": "Mars/Olympus"}, "workflow 'sched.bad': unknown schedule_tz 'Mars/Olympus'"),
    ({"schedule_tz": "UTC"}, "schedule_tz is given without a schedule"),
    ({"schedule": "0 2 * * *", "schedule_tz": "America"}, "workflow 'sched.bad': unknown schedule_tz 'America'"),
    ({"schedule": 123}, "workflow 'sched.bad': schedule must be a cron expression or a list of them, got 123"),
    ({"schedule": "0 0 30 2 *"}, "workflow 'sched.bad': '0 0 30 2 \\*' matches no date, so it would never fire"),
])
def test_a_schedule_that_cannot_be_read_is_refused_at_import(options, says):
    with pytest.raises(ValueError, match=says):
        @workflow("sched.bad", **options)
        def bad(wf):
            return None
    with pytest.raises(Exception, match="unknown workflow"):
        get_definition("sched.bad")


def test_a_scheduled_workflow_must_start_without_arguments():
    with pytest.raises(ValueError, match="'sched.args' has a schedule, so it is started without arguments"):
        @workflow("sched.args", schedule="@hourly")
        def needs_input(wf, account_id):
            return None

    @workflow("sched.defaults", schedule="@hourly")
    def has_defaults(wf, account_id=None):
        return account_id

    unregister("sched.defaults")


def test_a_naive_now_is_read_in_the_project_time_zone(nightly, settings):
    settings.TIME_ZONE = "Asia/Tokyo"  # UTC+9: 11:30 there is 02:30 UTC
    assert fire_schedules(now=datetime(2026, 3, 1, 11, 30)) == ["sched.nightly@2026-03-01T02:00:00Z"]


def test_now_must_be_a_datetime(nightly):
    with pytest.raises(TypeError, match="fire_schedules\\(now=\\) takes a datetime, got '2026-03-01'"):
        fire_schedules(now="2026-03-01")
    assert ScheduleFire.objects.count() == 0


def test_the_fire_id_of_a_very_long_name_still_fits():
    long_name = "x" * 250
    stamp = at(1, 2) + timedelta(0)
    assert len(fire_id(long_name, stamp)) <= 255
    assert fire_id(long_name, stamp).endswith("@2026-03-01T02:00:00Z")


# -- where operators see schedules ----------------------------------------------------------------

def test_definitions_say_when_each_runs_next(nightly, admin_user):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_login(admin_user)
    rows = {d["name"]: d for d in api.get("/api/workflows/definitions/").json()}
    assert rows["sched.nightly"]["schedule"] == ["0 2 * * *"]
    assert rows["sched.nightly"]["schedule_tz"] == "UTC"
    upcoming = datetime.fromisoformat(rows["sched.nightly"]["next_fire_at"].replace("Z", "+00:00"))
    assert upcoming == next_fire(get_definition("sched.nightly"))
    assert (upcoming.hour, upcoming.minute) == (2, 0)
    assert rows["tests.greet"]["schedule"] is None and rows["tests.greet"]["next_fire_at"] is None


def test_the_schedules_command_lists_and_fires(nightly):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("durable_workflows", "schedules", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["WORKFLOW", "SCHEDULE"]
    row = next(line for line in lines if line.startswith("sched.nightly"))
    assert "0 2 * * * (UTC)" in row and "never" in row
    assert next_fire(get_definition("sched.nightly")).isoformat() in row

    out = io.StringIO()
    call_command("durable_workflows", "schedules", "--fire", stdout=out)
    assert out.getvalue().startswith("Started 1 instance: sched.nightly@")
    started = ScheduleFire.objects.get(workflow="sched.nightly").last_instance_id
    assert f"{started} (" in out.getvalue()


def test_the_admin_schedules_page(nightly, admin_client):
    from django.urls import reverse

    url = reverse("admin:durable_workflows_schedulefire_changelist")
    page = admin_client.get(url).content.decode()
    assert "sched.nightly" in page and "never" in page and "<code>0 2 * * * (UTC)</code>" in page
    [started] = fire_schedules(now=at(7, 3))
    page = admin_client.get(url).content.decode()
    assert reverse("admin:durable_workflows_workflowinstance_change", args=[started]) in page
    WorkflowInstance.objects.filter(pk=started).delete()
    assert f"{started} (purged)" in admin_client.get(url).content.decode()
    assert admin_client.get(reverse("admin:durable_workflows_schedulefire_add")).status_code == 403
