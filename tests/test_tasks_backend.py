"""Django's tasks framework on durable workflows: `durable_workflows.tasks_backend`.

Django 6.0 and later, or Django 5.2 with the django-tasks backport. The test settings run
django-q2 in the caller's thread, so an enqueued task runs before `enqueue` returns (its result
is then final); the last tests run one on real workers: a `qcluster`, and django-tasks-db's
`db_worker` (through TasksDispatcher) where it is installed."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from signal import SIGKILL

import django
import pytest

pytest.importorskip("durable_workflows.tasks_framework",
                    reason="needs Django's tasks framework: Django 6.0+, or the django-tasks backport")

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from durable_workflows import client, fire_alarms  # noqa: E402
from durable_workflows.engine.runs import executor_name  # noqa: E402
from durable_workflows.exceptions import NonRetryableError, StepTimeout  # noqa: E402
from durable_workflows.models import Alarm, Event, WorkflowInstance  # noqa: E402
from durable_workflows.taskflow import TASK_WORKFLOW  # noqa: E402
from durable_workflows.tasks_backend import DurableTaskBackend  # noqa: E402
from durable_workflows.tasks_framework import (  # noqa: E402
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from tests.helpers import wait_until  # noqa: E402
from tests.testapp import task_defs  # noqa: E402
from tests.workers.db_workers import (
    db_workers_fixture,  # noqa: E402,F401  (the `db_workers` fixture)
    needs_tasks_db,  # noqa: E402
)
from tests.workers.fixtures import workers_fixture  # noqa: E402,F401  (the `workers` fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_backend_supports_everything():
    backend = task_backends["default"]
    assert isinstance(backend, DurableTaskBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def test_enqueue_runs_the_task_as_an_instance_and_get_result_reads_it():
    result = task_defs.add.enqueue(2, b=3)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    instance = WorkflowInstance.objects.get(pk=result.id)
    assert (instance.workflow, instance.state) == (TASK_WORKFLOW, "completed")
    again = task_defs.add.get_result(result.id)
    assert again.status == TaskResultStatus.SUCCESSFUL and again.return_value == 5
    assert (again.args, again.kwargs) == ([2], {"b": 3})
    assert again.task.func is task_defs.add.func and again.backend == "default"
    assert again.attempts == 1 and again.errors == []
    assert again.enqueued_at <= again.started_at <= again.last_attempted_at <= again.finished_at
    assert client.get(result.id).steps[0].name == task_defs.add.module_path


def test_an_async_task_runs():
    assert task_defs.async_double.enqueue(21).return_value == 42


def test_aenqueue_and_aget_result():
    async def both():
        result = await task_defs.add.aenqueue(1, 1)
        return await task_defs.add.aget_result(result.id)

    assert asyncio.run(both()).return_value == 2


def test_priority_and_queue_name_are_accepted_and_kept():
    result = task_defs.send_welcome.using(priority=-5).enqueue(7)
    fetched = task_backends["default"].get_result(result.id)
    assert fetched.task.priority == -5 and fetched.task.queue_name == "emails"
    assert fetched.return_value == "welcome 7"
    # The instance has it too: where instances wait for a slot, it orders them.
    assert client.get(result.id).priority == -5


def test_retries_follow_the_retry_option_and_record_each_error():
    task_defs.FLAKY["left"] = 2
    result = task_defs.flaky.enqueue(9)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 9
    assert result.attempts == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ConnectionError"] * 2
    assert result.errors[0].exception_class is ConnectionError
    # Each attempt names the executor that ran it (here the test's own thread).
    assert result.worker_ids == [executor_name()] * 3


def test_a_task_that_fails_for_good_has_its_errors_with_tracebacks():
    result = task_defs.broken.enqueue()
    assert result.status == TaskResultStatus.READY  # the retry waits an hour, on an alarm
    assert len(result.errors) == 1 and result.attempts == 1
    Alarm.objects.filter(instance_id=result.id).update(fire_at=timezone.now() - timedelta(seconds=1))
    assert result.id in fire_alarms()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 2
    assert [e.exception_class for e in result.errors] == [KeyError, KeyError]
    assert "raise KeyError" in result.errors[-1].traceback
    assert result.worker_ids == [executor_name()] * 2
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018


def test_run_after_defers_the_start_on_an_alarm():
    when = timezone.now() + timedelta(hours=1)
    result = task_defs.add.using(run_after=when).enqueue(1, 2)
    assert result.status == TaskResultStatus.READY and result.started_at is None
    handle = client.get(result.id)
    assert handle.state == "paused" and handle.alarm.fire_at == when
    assert result.task.run_after == when
    Alarm.objects.filter(instance_id=result.id).update(fire_at=timezone.now() - timedelta(seconds=1))
    assert result.id in fire_alarms()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 3


def test_the_three_signals_are_sent():
    seen = []

    def receiver(signal, sender, task_result, **kwargs):
        seen.append((signal, sender, task_result.id, task_result.status))

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(receiver)
    try:
        result = task_defs.add.enqueue(1, 1)
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(receiver)
    assert [(s, r, st) for s, _, r, st in seen] == [
        (task_enqueued, result.id, TaskResultStatus.READY),
        (task_started, result.id, TaskResultStatus.RUNNING),
        (task_finished, result.id, TaskResultStatus.SUCCESSFUL),
    ]
    assert {sender for _, sender, _, _ in seen} == {DurableTaskBackend}


def test_a_signal_s_result_reads_the_rest_when_a_receiver_asks_for_it():
    finished = []

    def receiver(sender, task_result, **kwargs):
        finished.append((task_result.status, task_result.return_value, task_result.args, task_result.attempts,
                         task_result.worker_ids, task_result.task.module_path, task_result.finished_at))

    task_finished.connect(receiver)
    try:
        result = task_defs.add.enqueue(2, 3)
    finally:
        task_finished.disconnect(receiver)
    fetched = task_backends["default"].get_result(result.id)
    assert finished == [(TaskResultStatus.SUCCESSFUL, 5, [2, 3], 1, [executor_name()], task_defs.add.module_path,
                         fetched.finished_at)]


def test_an_enqueue_in_a_transaction_that_rolls_back_leaves_nothing():
    before = WorkflowInstance.objects.count()
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            task_defs.add.enqueue(1, 2)
            raise RuntimeError("rolled back")
    assert WorkflowInstance.objects.count() == before


def test_a_task_is_a_step_of_a_workflow():
    handle = client.start(task_defs.welcome_flow, 42)
    assert handle.result() == "welcome 42"
    assert [s.name for s in handle.steps] == ["Welcome"]
    assert not WorkflowInstance.objects.filter(workflow=TASK_WORKFLOW).exists()


def test_a_task_takes_its_context():
    assert task_defs.attempt_number.enqueue().return_value == 1


def test_invalid_tasks_are_refused():
    def local(x):
        return x

    with pytest.raises(InvalidTask, match="module level"):
        task(local)
    with pytest.raises(InvalidTask, match="priority"):
        task_defs.add.using(priority=101)
    with pytest.raises(InvalidTask, match="Queue"):
        task_defs.add.using(queue_name="nowhere")


needs_task_keywords = pytest.mark.skipif(django.VERSION < (6, 1), reason="@task passes its keywords on from Django 6.1")


@needs_task_keywords
def test_a_task_s_own_retry_policy_is_used_over_the_backend_s():
    task_defs.ONCE_FLAKY["left"] = 1
    result = task_defs.flaky_once.enqueue(4)  # the default backend runs a task once
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 4
    assert result.attempts == 2 and [e.exception_class for e in result.errors] == [ConnectionError]


@needs_task_keywords
def test_a_task_s_timeout_limits_each_attempt():
    result = task_defs.overdue.enqueue()
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class for e in result.errors] == [StepTimeout]


@needs_task_keywords
@pytest.mark.parametrize("keywords, says", [
    ({"retry": "three"}, "retry must be a RetryPolicy or a dict of its arguments, got 'three'"),
    ({"retry": {"max_attempts": 0}}, "retry: max_attempts must be at least 1"),
    ({"timeout": "soon"}, "invalid timeout 'soon'"),
])
def test_bad_task_keywords_are_refused_naming_them(keywords, says):
    with pytest.raises(InvalidTask, match=re.escape(says)):
        task(**keywords)(task_defs.add.func)


def test_arguments_that_are_not_json_are_refused_and_nothing_is_created():
    before = WorkflowInstance.objects.count()
    with pytest.raises(TypeError, match="Unsupported type"):
        task_defs.add.enqueue(object(), 1)
    assert WorkflowInstance.objects.count() == before


def test_an_unknown_id_does_not_exist():
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result("no-such-id")
    other = client.start("tests.nap", "0s")
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(other.instance_id)


def test_a_task_whose_module_does_not_import_fails_naming_its_path():
    def gone():
        return "never"

    gone.__module__, gone.__qualname__ = "tests.testapp.no_such_module", "gone"
    path = "tests.testapp.no_such_module.gone"
    result = task(gone).enqueue()
    assert result.status == TaskResultStatus.FAILED
    assert WorkflowInstance.objects.get(pk=result.id).state == "failed"
    fetched = task_backends["default"].get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED and fetched.attempts == 1
    assert fetched.task.module_path == path
    (error,) = fetched.errors
    assert error.exception_class is NonRetryableError
    assert f"task {path!r} cannot be imported" in error.traceback
    assert "No module named 'tests.testapp.no_such_module'" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        fetched.return_value  # noqa: B018


@pytest.mark.parametrize("retry, message", [
    ("three", "must be a dict"),
    ({"max_attempts": 0}, "max_attempts must be at least 1"),
    ({"tries": 2}, "unexpected keyword"),
])
def test_a_bad_retry_option_is_named(retry, message):
    with pytest.raises(ImproperlyConfigured, match=rf"TASKS\['x'\]\['OPTIONS'\]\['RETRY'\].*{message}"):
        DurableTaskBackend("x", {"OPTIONS": {"RETRY": retry}})


def _wait_finished(workers, task, result, message: str) -> None:
    """Wait until the cluster has finished the task, then refresh `result`; the clusters'
    logs are the failure's message."""
    try:
        wait_until(lambda: task.get_result(result.id).is_finished, timeout=60, interval=0.1, message=message)
    except AssertionError:
        raise AssertionError(workers.clusters.logs()) from None
    result.refresh()


@pytest.fixture(name="runner", params=["qcluster", pytest.param("db_worker", marks=needs_tasks_db)])
def runner_fixture(request):
    """The workers of a slow test: a real qcluster, or django-tasks-db's real db_workers with a
    ticker beside them, the instances' runs sent to them by TasksDispatcher."""
    return request.getfixturevalue("workers" if request.param == "qcluster" else "db_workers")


@pytest.mark.slow
def test_a_real_worker_runs_an_enqueued_task(runner):
    workers = runner
    cluster = workers.clusters.start("a", workers=1)
    task_defs.FLAKY["left"] = 0
    result = task_defs.add.enqueue(20, 22)
    assert result.status == TaskResultStatus.READY  # on its way to the cluster
    _wait_finished(workers, task_defs.add, result, "the cluster to run the task")
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 42
    (worker,) = result.worker_ids
    host, pid, _ = worker.split(":")
    assert pid.isdigit() and int(pid) in cluster.worker_pids()


@pytest.mark.slow
def test_a_worker_sigkilled_mid_task_is_recovered_and_the_task_runs_again(runner):
    workers = runner
    cluster = workers.clusters.start("a", workers=1, DW_LEASE_SECONDS=3, DW_HEARTBEAT_SECONDS=1,
                                     DW_REDISPATCH_AFTER_SECONDS=5, DW_Q_TIMEOUT=8, DW_Q_RETRY=10)
    result = task_defs.logged_nap.enqueue(2.0)
    wait_until(workers.executions, timeout=60, interval=0.05, message="the task to start on the worker")
    cluster.kill(SIGKILL)
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING and not result.is_finished

    cluster.start().wait_ready()
    _wait_finished(workers, task_defs.logged_nap, result, "the task to be recovered and finish")
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "nap"
    assert result.errors == []
    first, second = workers.executions()
    assert first.end is None and second.end is not None and first.pid != second.pid
    assert Event.objects.filter(instance_id=result.id, kind="workflow.recovered").count() == 1
    assert [w.split(":")[1] for w in result.worker_ids][-1] == str(second.pid)
