"""Workflows on django-tasks-db's own worker: `TasksDispatcher` sends each run as a task of its
DatabaseBackend, real `manage.py db_worker` processes run them, and a real `manage.py
durable_workflows ticker` does the periodic work (alarms, recovery) beside them.

Skipped where django-tasks-db is not installed (CI installs it in the Python 3.13 pass). Every
wait is a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from durable_workflows import client, send_event
from durable_workflows.models import Event
from tests.helpers import ROOT, wait_until
from tests.workers import steplog

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not getattr(settings, "TASKS_DB", False) or find_spec("django_tasks_db") is None,
                       reason="needs django-tasks-db (pip install django-tasks-db) and Django's tasks framework"),
]

ALIAS = "db"
DISPATCHER = {"DISPATCHER": "durable_workflows.dispatch.TasksDispatcher", "TASKS_BACKEND": ALIAS}
RUN_INSTANCE = "durable_workflows.tasks_dispatch.run_instance"


@dataclass
class Process:
    """A `python -m django ...` process in a session of its own, logging to a file."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Process:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen([sys.executable, "-m", "django", *self.args], cwd=ROOT, env=self.env,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL to the process and any child: the machine lost."""
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class DbWorkers:
    """db_worker processes and one ticker on the test database, sharing one step log."""

    env: dict[str, str]
    log_dir: Path
    step_log: Path
    name: str
    started: list[Process] = field(default_factory=list)

    def _start(self, label: str, *args: str) -> Process:
        process = Process(list(args), self.env, self.log_dir / f"{label}.log").start()
        self.started.append(process)
        return process

    def worker(self, label: str) -> Process:
        return self._start(label, "db_worker", "--backend", ALIAS, "--interval", "0.1", "--no-startup-delay",
                           "--no-reload", "--worker-id", f"{self.name}-{label}")

    def ticker(self) -> Process:
        return self._start("ticker", "durable_workflows", "ticker", "--name", self.name)

    def executions(self) -> list[steplog.Execution]:
        return steplog.read(self.step_log)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.stem} (pid {p.pid})\n{p.log()[-3000:]}" for p in self.started)

    def wait_completed(self, handle: client.WorkflowHandle, timeout: float = 40) -> None:
        try:
            wait_until(lambda: handle.refresh().state == "completed", timeout=timeout, interval=0.1,
                       message=f"{handle.instance_id} to complete (it is {handle.state})")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.logs()}") from None

    def close(self) -> None:
        for process in self.started:
            process.kill()


@pytest.fixture(name="db_workers")
def db_workers_fixture(transactional_db, tmp_path, monkeypatch) -> Iterator[DbWorkers]:
    import tests.workers.workflows  # noqa: F401  (registers the workflows the workers run)

    step_log = tmp_path / "steps.jsonl"
    monkeypatch.setenv("DW_STEP_LOG", str(step_log))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.workers.settings",
           "DW_DB_NAME": str(connection.settings_dict["NAME"]), "DW_STEP_LOG": str(step_log),
           "DW_DISPATCHER": DISPATCHER["DISPATCHER"], "DW_TASKS_BACKEND": ALIAS,
           "DW_LEASE_SECONDS": "3", "DW_HEARTBEAT_SECONDS": "1", "DW_REDISPATCH_AFTER_SECONDS": "5",
           "PYTHONUNBUFFERED": "1"}
    setup = DbWorkers(env, tmp_path, step_log, f"dbw{uuid.uuid4().hex[:8]}")
    try:
        with override_settings(DURABLE_WORKFLOWS=DISPATCHER):
            yield setup
    finally:
        setup.close()


def _run_tasks() -> int:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(task_path=RUN_INSTANCE, backend_name=ALIAS).count()


def test_a_workflow_of_several_steps_completes_on_a_db_worker(db_workers):
    worker = db_workers.worker("a")
    handle = client.start("workers.steps", 3)
    db_workers.wait_completed(handle)
    assert handle.result() == 3
    executions = db_workers.executions()
    assert [e.step for e in executions] == ["step-0", "step-1", "step-2"]
    assert {e.pid for e in executions} == {worker.pid}
    assert not [e for e in executions if e.in_transaction], "a step ran inside a transaction"
    assert _run_tasks() == 1


def test_a_sleep_is_fired_by_the_ticker_and_resumes_on_the_db_worker(db_workers):
    worker, ticker = db_workers.worker("a"), db_workers.ticker()
    handle = client.start("workers.nap", 0.5)
    db_workers.wait_completed(handle)
    assert handle.result() == "rested"
    before, after = db_workers.executions()
    assert (before.step, after.step) == ("before", "after")
    assert before.pid == after.pid == worker.pid != ticker.pid
    assert Event.objects.filter(instance_id=handle.instance_id, kind="workflow.resumed").count() == 1
    assert _run_tasks() == 2  # the start, and the resume the ticker sent


def test_an_event_wakes_a_waiting_workflow_on_the_db_worker(db_workers):
    worker = db_workers.worker("a")
    handle = client.start("workers.await_event")
    wait_until(lambda: handle.refresh().state == "paused", timeout=40, interval=0.1,
               message="the workflow to wait for its event")
    assert send_event(handle.instance_id, "go", {"n": 7})
    db_workers.wait_completed(handle)
    assert handle.result() == {"n": 7}
    assert [(e.step, e.pid) for e in db_workers.executions()] == [("after", worker.pid)]


def test_a_failing_step_is_retried_after_its_delays(db_workers):
    worker, _ = db_workers.worker("a"), db_workers.ticker()
    handle = client.start("workers.flaky", 2, 0.5)
    db_workers.wait_completed(handle)
    assert handle.result() == 3
    executions = db_workers.executions()
    assert [e.step for e in executions] == ["flaky"] * 3 and {e.pid for e in executions} == {worker.pid}
    assert Event.objects.filter(instance_id=handle.instance_id, kind="retry.scheduled").count() == 2
    (step,) = handle.steps
    assert step.attempts == 3
    assert _run_tasks() == 3  # each retry is a run of its own, woken by the ticker


def test_a_db_worker_killed_mid_step_is_recovered_by_the_ticker_and_the_step_runs_again(db_workers):
    workers = {p.pid: p for p in (db_workers.worker("a"), db_workers.worker("b"))}
    db_workers.ticker()
    handle = client.start("workers.slow_once", 60)
    slow = wait_until(lambda: [e for e in db_workers.executions() if e.step == "slow-once"], timeout=40,
                      interval=0.05, message="the slow step to start on a worker")
    killed = slow[0].pid
    workers[killed].kill()
    db_workers.wait_completed(handle)
    assert handle.result() == "slow-once"
    first, second = [e for e in db_workers.executions() if e.step == "slow-once"]
    assert first.end is None and second.end is not None
    (survivor,) = set(workers) - {killed}
    assert (first.pid, second.pid) == (killed, survivor)
    assert Event.objects.filter(instance_id=handle.instance_id, kind="workflow.recovered").count() == 1
