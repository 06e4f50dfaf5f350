"""The event log: a step writes one row, its record, and the log reads its step events from
it; what the log shows is what the signals said, in the same order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from durable_workflows import client, recover, run_inline
from durable_workflows.engine.eventlog import event_log
from durable_workflows.models import Event, StepRecord
from durable_workflows.signals import lifecycle_event
from tests.helpers import logged, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


class Signalled(list):
    def __call__(self, sender, event, position, data, **kwargs):
        self.append((event, position, data.get("attempt")))


def signalled_while(fn):
    received = Signalled()
    lifecycle_event.connect(received, dispatch_uid="test_event_log")
    try:
        fn()
    finally:
        lifecycle_event.disconnect(dispatch_uid="test_event_log")
    return received


def entries(instance_id):
    return [(e.kind, e.position, e.data.get("attempt")) for e in event_log(instance_id)[0]]


def test_a_step_writes_its_record_and_no_event_row():
    received = signalled_while(lambda: run_inline("engine.loop", 3, instance_id="one-row"))
    assert StepRecord.objects.filter(instance_id="one-row").count() == 3
    assert not Event.objects.filter(instance_id="one-row", kind__startswith="step.").exists()
    assert logged("one-row") == [
        "workflow.started",
        "step.started", "step.completed", "step.started", "step.completed", "step.started", "step.completed",
        "workflow.completed",
    ]
    assert entries("one-row") == received


@pytest.mark.parametrize("timeout", [None, "1h"], ids=["attempts-in-memory", "attempts-stored"])
def test_every_attempt_of_a_retried_step_is_logged_in_order(timeout):
    name = f"flaky-{timeout}"
    received = signalled_while(lambda: run_inline("engine.flaky", name, 3, timeout, instance_id=name))
    assert client.get(name).result() == 3
    log = entries(name)
    assert log == received
    steps = [(kind, attempt) for kind, _, attempt in log if kind.startswith(("step.", "retry."))]
    assert steps == [
        ("step.started", 1), ("step.failed", 1), ("retry.scheduled", 2),
        ("step.started", 2), ("step.failed", 2), ("retry.scheduled", 3),
        ("step.started", 3), ("step.completed", 3),
    ]
    if timeout is not None:
        assert [kind for kind, _, _ in log].count("timeout.set") == 3


def test_the_admin_count_and_the_latest_entries_agree_with_the_whole_log():
    run_inline("engine.loop", 30, instance_id="long-log")
    whole, total = event_log("long-log")
    assert total == len(whole) == 1 + 2 * 30 + 1
    latest, counted = event_log("long-log", latest=10)
    assert counted == total and latest == whole[-10:]


def test_a_fork_logs_only_its_own_steps():
    run_inline("engine.loop", 3, instance_id="forked-from")
    client.fork("forked-from", from_position=2, new_id="the-fork")
    wait_until(lambda: client.get("the-fork").state == "completed", timeout=10)
    steps = [(kind, position) for kind, position, _ in entries("the-fork") if kind.startswith("step.")]
    assert steps == [("step.started", 2), ("step.completed", 2)]


def test_a_stored_attempt_cut_short_by_a_crash_stays_on_the_log(tmp_path):
    marker = tmp_path / "steps.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DW_DB_NAME": connection.settings_dict["NAME"],
           "DW_LEASE_SECONDS": "1", "DW_HEARTBEAT_SECONDS": "0.25"}
    script = ("import django; django.setup()\nimport tests.testapp.engine_workflows\n"
              "from durable_workflows import client\n"
              f"client.run_inline('engine.crashy_timed', {str(marker)!r}, instance_id='cut-short')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 17, done.stderr
    wait_until(lambda: "cut-short" in recover(), timeout=15, message="the lease to expire")
    assert client.get("cut-short").result() == "survived"
    crash = [(kind, attempt) for kind, position, attempt in entries("cut-short")
             if position == 1 and kind.startswith("step.")]
    # The attempt in flight is run again as the same attempt, as before a record said it.
    assert crash == [("step.started", 1), ("step.started", 1), ("step.completed", 1)]
