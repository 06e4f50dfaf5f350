"""Concurrency limits: at most N instances per key hold a slot; the rest wait Queued and go
oldest first as slots free, also when a holder crashes or its wake-up is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from durable_workflows import client, recover, workflow
from durable_workflows.engine import execute
from durable_workflows.engine.concurrency import queued_behind
from durable_workflows.models import WorkflowInstance
from durable_workflows.registry import get_definition
from tests.helpers import in_thread, wait_until
from tests.queueing import QUEUE, TASKS, drain  # noqa: E402
from tests.testapp.limit_workflows import most_inside, read_log

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
@pytest.fixture(autouse=True)
def queue():
    TASKS.clear()
    with override_settings(DURABLE_WORKFLOWS=QUEUE):
        yield
    TASKS.clear()


def states(*handles) -> list[str]:
    return [str(client.get(h.instance_id).state) for h in handles]


def test_one_per_key_the_others_wait_and_go_oldest_first(tmp_path):
    log = str(tmp_path / "inside.log")
    first, second, third = (client.start("limits.sync_account", "acme", log) for _ in range(3))
    other = client.start("limits.sync_account", "globex", log)
    drain()
    assert states(first, second, third, other) == ["paused", "queued", "queued", "paused"]
    assert [queued_behind(client.get(h.instance_id).instance) for h in (first, second, third)] == [None, 1, 2]
    # Waiting instances have no task out: the lost-task scans leave them alone.
    assert WorkflowInstance.objects.get(pk=second.instance_id).dispatched_at is None
    assert recover() == [] and TASKS == []

    client.send_event(first.instance_id, "done")
    drain()
    assert states(first, second, third) == ["completed", "paused", "queued"]
    client.send_event(second.instance_id, "done")
    drain()
    assert states(second, third) == ["completed", "paused"]
    client.send_event(third.instance_id, "done")
    client.send_event(other.instance_id, "done")
    drain()
    assert states(first, second, third, other) == ["completed"] * 4

    entries = read_log(log)
    acme = [e for e in entries if e["instance"] != other.instance_id]
    assert most_inside(acme) == 1
    assert [(e["instance"], e["event"]) for e in sorted(acme, key=lambda e: e["at"])] == [
        (h.instance_id, event) for h in (first, second, third) for event in ("enter", "leave")]
    assert most_inside(entries) == 2  # globex did not wait for acme


def test_claims_at_once_let_one_in(tmp_path, vendor):
    log = str(tmp_path / "inside.log")
    handles = [client.start("limits.sync_account", "acme", log) for _ in range(6)]
    tasks, TASKS[:] = list(TASKS), []
    barrier = threading.Barrier(len(tasks))

    def claim(task):
        barrier.wait(timeout=10)
        execute(*task)

    threads = [in_thread(lambda task=task: claim(task)) for task in tasks]
    for thread in threads:
        thread.join(timeout=60)
    assert Counter(states(*handles)) == {"paused": 1, "queued": 5}
    assert WorkflowInstance.objects.filter(slot_held=True).count() == 1


def test_a_crashed_holder_keeps_its_slot_until_recovery_runs_it(tmp_path):
    log, marker = str(tmp_path / "inside.log"), str(tmp_path / "crash.log")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DW_DB_NAME": connection.settings_dict["NAME"],
           "DW_LEASE_SECONDS": "1", "DW_HEARTBEAT_SECONDS": "0.25"}
    script = ("import django; django.setup()\nfrom durable_workflows import client\n"
              f"client.run_inline('limits.sync_account', 'acme', {log!r}, crash_marker={marker!r}, "
              "instance_id='holder')")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 17, done.stderr
    assert states(client.get("holder")) == ["running"]

    waiting = client.start("limits.sync_account", "acme", log)
    drain()
    assert states(waiting) == ["queued"]
    wait_until(lambda: "holder" in recover(), timeout=15, message="the crashed holder's lease to expire")
    drain()
    # Recovered, it holds its slot again while it waits for its event; the other still waits.
    assert states(client.get("holder"), waiting) == ["paused", "queued"]
    client.send_event("holder", "done")
    drain()
    assert states(client.get("holder"), waiting) == ["completed", "paused"]
    assert most_inside(read_log(log)) == 1


def test_a_cancelled_holder_frees_its_slot(tmp_path):
    log = str(tmp_path / "inside.log")
    first, second = (client.start("limits.sync_account", "acme", log) for _ in range(2))
    drain()
    client.cancel(first.instance_id)
    drain()
    assert states(first, second) == ["cancelled", "paused"]


def test_a_lost_wake_up_is_found_by_recover(tmp_path):
    log = str(tmp_path / "inside.log")
    first, second = (client.start("limits.sync_account", "acme", log) for _ in range(2))
    drain()
    # The holder's process died right after its final move committed, before it let the next go.
    WorkflowInstance.objects.filter(pk=first.instance_id).update(state="completed", finished_at=timezone.now())
    assert TASKS == []
    assert recover() == [second.instance_id]
    drain()
    assert states(second) == ["paused"]


def test_a_limit_for_the_whole_workflow(tmp_path):
    handles = [client.start("limits.two_at_once", 2) for _ in range(3)]
    # Claimed one by one without running: two take slots, the third waits.
    for instance_id, mode, epoch in list(TASKS):
        from durable_workflows.engine.runs import claim

        claim(instance_id, mode, epoch)
    TASKS.clear()
    assert Counter(states(*handles)) == {"running": 2, "queued": 1}
    assert WorkflowInstance.objects.get(pk=handles[2].instance_id).concurrency_key == ""


def test_key_values_are_told_apart_whatever_their_type():
    definition = get_definition("limits.sync_account")
    from durable_workflows.engine.concurrency import key_of

    assert key_of(definition, ["acme", "log"], {}) == '"acme"'
    assert key_of(definition, [], {"account": {"b": 1, "a": [2]}, "log": "x"}) == '{"a": [2], "b": 1}'
    long_a, long_b = key_of(definition, ["a" * 300 + "1", "x"], {}), key_of(definition, ["a" * 300 + "2", "x"], {})
    assert long_a != long_b and len(long_a) <= 255
    assert key_of(get_definition("tests.greet"), ["x"], {}) is None


@pytest.mark.parametrize("options, says", [
    ({"concurrency": 0}, "concurrency must be a whole number of at least 1, got 0"),
    ({"concurrency": "2"}, "concurrency must be a whole number of at least 1, got '2'"),
    ({"concurrency": True}, "concurrency must be a whole number of at least 1, got True"),
    ({"concurrency": 1.5}, "concurrency must be a whole number of at least 1, got 1.5"),
    ({"concurrency": 2, "concurrency_key": "acount"}, r"concurrency_key 'acount' is not a parameter of the "
                                                       r"function \(its parameters: account, log\)"),
    ({"concurrency": 2, "concurrency_key": "wf"}, "concurrency_key 'wf' is not a parameter"),
    ({"concurrency_key": "account"}, "concurrency_key is given without concurrency=N"),
])
def test_a_limit_that_cannot_hold_is_refused_at_import(options, says):
    with pytest.raises(ValueError, match=f"workflow 'limits.bad': {says}"):
        @workflow("limits.bad", **options)
        def bad(wf, account, log):
            return None


def test_the_admin_says_what_a_waiting_instance_is_queued_behind(tmp_path, admin_client):
    from django.urls import reverse

    log = str(tmp_path / "inside.log")
    first, second, third = (client.start("limits.sync_account", "acme", log) for _ in range(3))
    drain()
    listing = admin_client.get(reverse("admin:durable_workflows_workflowinstance_changelist")).content.decode()
    assert "queued behind 1 (concurrency 1 per &quot;acme&quot;)" in listing
    assert "queued behind 2 (concurrency 1 per &quot;acme&quot;)" in listing
    page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=[third.instance_id]))
    assert "queued behind 2 (concurrency 1 per &quot;acme&quot;)" in page.content.decode()
    first_page = admin_client.get(reverse("admin:durable_workflows_workflowinstance_change", args=[first.instance_id]))
    assert "queued behind" not in first_page.content.decode()


def test_the_list_reads_the_queues_of_its_rows_in_one_query(tmp_path, admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    listing = reverse("admin:durable_workflows_workflowinstance_changelist")
    log = str(tmp_path / "inside.log")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(listing).status_code == 200
        return len(captured.captured_queries)

    for _ in range(3):
        client.start("limits.sync_account", "acme", log)
    drain()
    few = queries()
    for _ in range(20):
        client.start("limits.sync_account", "acme", log)
    drain()
    assert queries() == few
    assert "queued behind 22 (concurrency 1 per &quot;acme&quot;)" in admin_client.get(listing).content.decode()


def test_a_waiting_instance_past_its_deadline_fails_without_taking_a_slot(tmp_path):
    from durable_workflows import fire_alarms

    log = str(tmp_path / "inside.log")
    first, second = (client.start("limits.timed", log) for _ in range(2))
    drain()
    assert states(first, second) == ["paused", "queued"]
    WorkflowInstance.objects.filter(pk=second.instance_id).update(deadline_at=timezone.now())
    assert fire_alarms() == [second.instance_id]
    drain()
    late = client.get(second.instance_id)
    assert late.state == "failed" and late.error["type"] == "WorkflowTimeout"
    assert not late.instance.slot_held
    assert [e["instance"] for e in read_log(log)] == [first.instance_id]
