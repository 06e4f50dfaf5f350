"""The django-q2 glue in this process: the ticker thread, lease release, the Schedule rows,
and the tasks the dispatcher enqueues. The tests settings run django-q2 tasks in the caller's
thread (`sync`), so whatever the ticker dispatches runs in the ticker's own thread."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from django_q.models import Schedule, Task

from durable_workflows import client, recover, ticker
from durable_workflows.models import WorkflowInstance
from durable_workflows.scheduling import SCHEDULES, ensure_schedules
from durable_workflows.tasks import TASK_NAME_LENGTH, release_leases
from tests.helpers import wait_until
from tests.testapp.workflows import CALLS

pytestmark = pytest.mark.django_db(transaction=True)


class LosingDispatcher:
    """Stands in for a broker that loses every task."""

    synchronous = False

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        return None


LOSE_TASKS = {"DISPATCHER": "tests.test_workers_glue.LosingDispatcher"}


@pytest.fixture
def running_ticker():
    started = []

    def start(**kwargs):
        thread = ticker.Ticker(**kwargs)
        started.append(thread)
        thread.start()
        return thread

    yield start
    for thread in started:
        thread.stop()
        thread.join(10)
        assert not thread.is_alive()


def test_the_ticker_fires_a_due_alarm(running_ticker):
    handle = client.start("tests.nap", "0.3s")
    assert handle.state == "paused"
    thread = running_ticker(alarm_interval=0.05, recovery_interval=0.1)
    wait_until(lambda: handle.refresh().state == "completed", timeout=20,
               message="the ticker to resume the instance")
    assert CALLS["before"] == 1 and CALLS["after"] == 1
    # The resume runs inside the alarm pass (django-q2 `sync`): the pass counts once it returns.
    wait_until(lambda: thread.ticks > 0, message="the alarm pass to return")
    assert thread.errors == 0


def test_the_ticker_recovers_a_run_whose_lease_expired(running_ticker):
    with override_settings(DURABLE_WORKFLOWS=LOSE_TASKS):
        handle = client.start("tests.greet", "Grace")
    # A worker claimed it and died: Running, with a lease that ran out.
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(
        state="running", epoch=1, lease_owner="gone:1:1",
        lease_expires_at=timezone.now() - timezone.timedelta(seconds=1),
    )
    running_ticker(alarm_interval=0.05, recovery_interval=0.05)
    wait_until(lambda: handle.refresh().state == "completed", timeout=20,
               message="the ticker to recover the instance")
    assert handle.result() == "Hello, Grace!"
    assert handle.instance.last_mode == "recover"


def test_stopping_the_ticker_ends_its_thread(running_ticker):
    thread = running_ticker(alarm_interval=0.05, recovery_interval=0.05)
    wait_until(lambda: thread.ticks >= 4, timeout=20, message="a few ticks")
    thread.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert thread.errors == 0


def test_ticker_intervals_must_be_positive():
    with pytest.raises(ValueError, match="ALARM_POLL_SECONDS and RECOVERY_POLL_SECONDS must be positive"):
        ticker.Ticker(alarm_interval=0, recovery_interval=1)
    with override_settings(DURABLE_WORKFLOWS={"RECOVERY_POLL_SECONDS": -1}):
        with pytest.raises(ValueError, match="-1"):
            ticker.Ticker()


def test_no_ticker_outside_a_worker_process():
    # django-q2 sends post_spawn when it runs a task in the caller's process (sync): that
    # must not start a ticker in a web process or a test run.
    ticker.on_worker_spawn(sender="django_q", proc_name="MainProcess")
    assert ticker.current() is None
    assert ticker.ensure_running() is None


def test_worker_ticker_setting_turns_it_off():
    with override_settings(DURABLE_WORKFLOWS={"WORKER_TICKER": False}):
        assert ticker.start() is None
    assert ticker.current() is None


def test_released_lease_is_recovered_at_the_next_scan():
    with override_settings(DURABLE_WORKFLOWS=LOSE_TASKS):
        handle = client.start("tests.greet", "Ada")
        WorkflowInstance.objects.filter(pk=handle.instance_id).update(
            state="running", epoch=1, lease_owner="host:42:7",
            lease_expires_at=timezone.now() + timezone.timedelta(minutes=5),
        )
        assert recover() == []
        assert release_leases("host:42:8") == 0
        assert release_leases("host:42:7") == 1
        wait_until(lambda: handle.refresh().instance.lease_expires_at < timezone.now(),
                   message="the released lease to lie in the past")
        assert recover() == [handle.instance_id]


def test_ensure_schedules_is_idempotent_and_repairs_rows():
    Schedule.objects.filter(name__in=SCHEDULES).delete()
    assert sorted(ensure_schedules()) == sorted(SCHEDULES)
    assert ensure_schedules() == []
    # A broken row is repaired in place; a duplicate of a name is removed.
    name = "durable_workflows.recover"
    Schedule.objects.filter(name=name).update(func="somewhere.else", repeats=0, minutes=30)
    Schedule.objects.create(name=name, func="durable_workflows.tasks.recover_task",
                            schedule_type=Schedule.MINUTES, minutes=1, repeats=-1)
    assert ensure_schedules() == []
    rows = Schedule.objects.filter(name__in=SCHEDULES)
    assert rows.count() == 2
    for row in rows:
        assert row.func == SCHEDULES[row.name]
        assert (row.schedule_type, row.minutes, row.repeats, row.cluster) == (
            Schedule.MINUTES, 1, -1, None,
        )


def test_schedules_follow_the_cluster_named_in_q_options():
    with override_settings(DURABLE_WORKFLOWS={"Q_OPTIONS": {"cluster": "workflows"}}):
        ensure_schedules()
    assert set(Schedule.objects.filter(name__in=SCHEDULES).values_list("cluster", flat=True)) == {
        "workflows"
    }


def test_migrate_creates_the_schedules():
    Schedule.objects.filter(name__in=SCHEDULES).delete()
    call_command("migrate", verbosity=0)
    assert sorted(Schedule.objects.filter(name__in=SCHEDULES).values_list("name", flat=True)) == sorted(
        SCHEDULES
    )


def test_scheduled_backstop_tasks_fire_alarms_and_recover():
    from durable_workflows.tasks import fire_alarms_task, recover_task

    handle = client.start("tests.nap", "0.05s")
    wait_until(lambda: handle.refresh().alarm.fire_at <= timezone.now(), message="the alarm to be due")
    assert fire_alarms_task() == 1
    assert handle.refresh().state == "completed"
    assert recover_task() == 0


def test_runs_leave_no_django_q_success_row_unless_asked():
    handle = client.start("tests.greet", "Lin")
    assert handle.state == "completed"
    assert not Task.objects.filter(func="durable_workflows.tasks.run_instance").exists()


@override_settings(DURABLE_WORKFLOWS={"Q_OPTIONS": {"save": True}})
def test_a_long_instance_id_fits_django_q_task_name():
    # With Q_OPTIONS {"save": True} django-q2 stores each run, under a name that must fit.
    instance_id = "x" * 255
    handle = client.start("tests.greet", "Lin", instance_id=instance_id)
    assert handle.state == "completed"
    names = list(Task.objects.filter(func="durable_workflows.tasks.run_instance").values_list("name", flat=True))
    assert len(names) == 1 and len(names[0]) <= TASK_NAME_LENGTH
    assert names[0].endswith("x" * 10)


class RecordingDispatcher:
    """Keeps the tasks it is given, as a broker would, without running them."""

    synchronous = False
    sent: list[tuple[str, str, int]] = []

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        self.sent.append((instance_id, mode, epoch))


def test_a_claim_the_database_failed_sends_its_task_again(monkeypatch):
    """A worker whose claim hits a database outage must not drop the task (the broker
    counts it as done): after a pause it sends the same task again."""
    from django.db import connection
    from django_q.conf import Conf

    from durable_workflows import tasks
    from durable_workflows.djangoq import runs
    from tests.faults import FailNthWrite

    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(runs, "CLAIM_RETRY_PAUSE", 0)
    RecordingDispatcher.sent.clear()
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "tests.test_workers_glue.RecordingDispatcher"}):
        handle = client.start("tests.greet", "outage")
        (sent,) = RecordingDispatcher.sent
        with connection.execute_wrapper(FailNthWrite(1, message="injected fault: the server closed the connection")):
            assert tasks.run_instance(*sent) is None
        assert RecordingDispatcher.sent == [sent, sent]
        assert WorkflowInstance.objects.get(pk=handle.instance_id).state == "queued"
        assert tasks.run_instance(*sent) == "completed"


@pytest.mark.parametrize("old, new", [
    ("durable_workflows.tasks", "durable_workflows.djangoq.dispatcher"),
    ("durable_workflows.tasks", "durable_workflows.djangoq.runs"),
    ("durable_workflows.ticker", "durable_workflows.djangoq.ticker"),
    ("durable_workflows.lost_tasks", "durable_workflows.djangoq.lost_tasks"),
    ("durable_workflows.wedge", "durable_workflows.djangoq.wedge"),
])
def test_the_first_module_paths_name_the_same_objects(old, new):
    """Settings, Schedule rows and tasks queued by the first release name these paths."""
    import importlib

    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    shared = [name for name in old_module.__all__ if hasattr(new_module, name)]
    assert shared and all(getattr(old_module, name) is getattr(new_module, name) for name in shared)


def test_tasks_and_schedules_name_the_functions_by_their_first_path():
    # A worker of the first release, in a rolling deploy, runs what this one enqueues.
    from django.utils.module_loading import import_string

    from durable_workflows import tasks
    from durable_workflows.conf import settings
    from durable_workflows.djangoq import runs

    assert tasks.RUN_INSTANCE == "durable_workflows.tasks.run_instance"
    assert import_string(tasks.RUN_INSTANCE) is runs.run_instance
    assert sorted(SCHEDULES.values()) == ["durable_workflows.tasks.fire_alarms_task",
                                          "durable_workflows.tasks.recover_task"]
    assert [import_string(path) for path in sorted(SCHEDULES.values())] == [runs.fire_alarms_task, runs.recover_task]
    assert import_string("durable_workflows.tasks.DjangoQDispatcher") is settings.DISPATCHER is tasks.DjangoQDispatcher
