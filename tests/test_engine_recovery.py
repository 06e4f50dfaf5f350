"""Leases, fencing and recovery: a stale executor cannot write; a crashed run resumes."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from durable_workflows import client, fire_alarms, recover
from durable_workflows.engine import execute
from durable_workflows.engine.scans import redispatch_stalled
from durable_workflows.models import Alarm, StepRecord, WorkflowInstance
from tests.helpers import wait_until
from tests.testapp.engine_workflows import GATES, SEEN

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
NO_DISPATCH = {"DISPATCHER": "tests.test_engine_client.NoDispatch"}


def test_an_executor_with_a_stale_epoch_cannot_write_a_step():
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        handle = client.start("engine.contested", "g")
    outcome = {}
    first = threading.Thread(target=lambda: outcome.update(a=execute(handle.instance_id, "fresh")))
    first.start()
    try:
        wait_until(lambda: SEEN["gate:g"] == 1, message="the first executor to enter its step")
        # The first executor's lease lapses (as if its heartbeat stopped); a second one takes over.
        WorkflowInstance.objects.filter(pk=handle.instance_id).update(
            lease_expires_at=timezone.now() - timezone.timedelta(seconds=1)
        )
        assert execute(handle.instance_id, "recover") == "completed"
    finally:
        GATES.setdefault("g", threading.Event()).set()
        first.join(30)
    assert outcome["a"] is None, "the stale executor must find its write refused"
    instance = WorkflowInstance.objects.get(pk=handle.instance_id)
    assert instance.state == "completed" and instance.epoch == 2
    assert client.get(handle.instance_id).result() == "g:2"
    record = StepRecord.objects.get(instance_id=handle.instance_id, position=0)
    assert record.result == '"g:2"'
    assert SEEN["after-gate"] == 1


def _run_script(code: str, lease: float = 1.0) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DW_DB_NAME": connection.settings_dict["NAME"],
        "DW_LEASE_SECONDS": str(lease),
        "DW_HEARTBEAT_SECONDS": str(lease / 4),
    }
    script = (
        "import django; django.setup()\n"
        "import tests.testapp.engine_workflows\n"
        "from durable_workflows import client, recover\n" + code
    )
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _recover_once(instance_id: str) -> None:
    wait_until(lambda: instance_id in recover(), timeout=15, message="the lease to expire")


def test_a_real_crash_then_recover_reruns_only_the_step_in_flight(tmp_path):
    marker = tmp_path / "steps.log"
    done = _run_script(f"client.run_inline('engine.crashy', {str(marker)!r}, instance_id='crash-1')")
    assert done.returncode == 17, done.stderr
    instance = WorkflowInstance.objects.get(pk="crash-1")
    assert instance.state == "running"
    assert marker.read_text().split() == ["one", "two", "in-flight"]

    _recover_once("crash-1")
    handle = client.get("crash-1")
    assert handle.state == "completed", handle.error
    assert handle.result() == "survived"
    assert handle.instance.last_mode == "recover" and handle.instance.epoch == 2
    assert marker.read_text().split() == ["one", "two", "in-flight", "in-flight", "four"]
    assert [s.attempts for s in handle.steps] == [1, 1, 1, 1]


def test_recovery_gives_up_after_max_recovery_attempts(tmp_path):
    marker = tmp_path / "killer.log"
    done = _run_script(f"client.run_inline('engine.killer', {str(marker)!r}, instance_id='killer')")
    assert done.returncode == 17
    for _ in range(3):
        wait_until(
            lambda: WorkflowInstance.objects.get(pk="killer").lease_expires_at < timezone.now(),
            timeout=15, message="the lease to expire",
        )
        done = _run_script("print(recover())")
        assert done.returncode == 17, done.stderr
    assert marker.read_text().split() == ["in-flight"] * 4
    _recover_once("killer")
    handle = client.get("killer")
    assert handle.state == "failed"
    assert handle.error["message"] == "failed after 3 recovery attempts"
    assert marker.read_text().split() == ["in-flight"] * 4


def test_recover_leaves_live_leases_alone():
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        handle = client.start("tests.greet", "x")
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(
        state="running", epoch=1, lease_expires_at=timezone.now() + timezone.timedelta(minutes=5)
    )
    assert recover() == []
    assert execute(handle.instance_id, "recover") is None


def test_lost_queued_task_is_dispatched_again():
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        handle = client.start("tests.greet", "lost")
        assert handle.state == "queued"
        assert recover() == []
    WorkflowInstance.objects.filter(pk=handle.instance_id).update(
        dispatched_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    assert recover() == [handle.instance_id]
    assert client.get(handle.instance_id).result() == "Hello, lost!"


def test_lost_resume_of_a_fired_alarm_is_dispatched_again():
    handle = client.start("tests.nap")
    assert handle.state == "paused"
    # The alarm fired long ago, but its resume never reached a worker.
    Alarm.objects.filter(instance_id=handle.instance_id).update(
        fire_at=timezone.now() - timezone.timedelta(minutes=6),
        fired_at=timezone.now() - timezone.timedelta(minutes=5),
    )
    assert recover() == [handle.instance_id]
    assert client.get(handle.instance_id).result() == "rested"
    assert recover() == []


def _sent_ago(instance_id: str, seconds: float) -> None:
    WorkflowInstance.objects.filter(pk=instance_id).update(
        dispatched_at=timezone.now() - timezone.timedelta(seconds=seconds))


def test_redispatch_backs_off_per_instance_and_a_run_resets_it():
    """A backlog longer than REDISPATCH_AFTER_SECONDS must not get one more task per
    instance per scan: each redispatch in a row waits twice as long as the one before."""
    with override_settings(DURABLE_WORKFLOWS={**NO_DISPATCH, "REDISPATCH_AFTER_SECONDS": 60}):
        handle = client.start("tests.greet", "backlog")
        sent = []
        for waited in (61, 61, 121, 121, 241):
            _sent_ago(handle.instance_id, waited)
            sent.append(recover() == [handle.instance_id])
        assert sent == [True, False, True, False, True]
        assert WorkflowInstance.objects.get(pk=handle.instance_id).redispatches == 3
        execute(handle.instance_id, "fresh")
    done = WorkflowInstance.objects.get(pk=handle.instance_id)
    assert done.state == "completed" and done.redispatches == 0


def test_lost_resumes_are_found_by_recover_alone():
    handle = client.start("tests.nap")
    Alarm.objects.filter(instance_id=handle.instance_id).update(
        fire_at=timezone.now() - timezone.timedelta(minutes=6),
        fired_at=timezone.now() - timezone.timedelta(minutes=5),
    )
    assert fire_alarms() == []
    assert recover() == [handle.instance_id]


def test_redispatch_stalled_sends_a_queued_task_again_after_the_shorter_wait():
    with override_settings(DURABLE_WORKFLOWS={**NO_DISPATCH, "LEASE_SECONDS": 5}):
        handle = client.start("tests.greet", "stalled")
        assert redispatch_stalled(5) == []
        _sent_ago(handle.instance_id, 6)
        assert redispatch_stalled(5) == [handle.instance_id]
        assert redispatch_stalled(5) == []


class BackloggedDispatcher:
    """A broker with tasks waiting to be taken, which loses the ones it is given."""

    synchronous = False

    def waiting(self) -> int:
        return 5

    def dispatch(self, instance_id, mode, epoch):
        return None


def test_redispatch_waits_longer_while_the_broker_has_a_backlog():
    backlogged = {"DISPATCHER": "tests.test_engine_recovery.BackloggedDispatcher", "REDISPATCH_AFTER_SECONDS": 60}
    with override_settings(DURABLE_WORKFLOWS=backlogged):
        handle = client.start("tests.greet", "behind")
        _sent_ago(handle.instance_id, 61)
        assert recover() == []
        _sent_ago(handle.instance_id, 60 * 8 + 1)
        assert recover() == [handle.instance_id]
