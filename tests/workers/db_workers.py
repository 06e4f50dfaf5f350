"""Real `manage.py db_worker` processes of django-tasks-db, and a real `manage.py durable_workflows
ticker` beside them, on the test database: workflow runs go through `TasksDispatcher` to the
TASKS alias "db" (tests/settings.py defines it where django-tasks-db is installed).

`DbWorkers` answers as the `workers` fixture of tests/workers/fixtures.py does (`clusters.start`,
`executions`, a cluster's `kill`, `start().wait_ready()` and `worker_pids`), so that a test of
qcluster workers can run on these as well. Whatever happens in a test, every process it started
is killed at its end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from tests.helpers import ROOT, wait_until
from tests.workers import steplog

ALIAS = "db"
DISPATCHER = {"DISPATCHER": "durable_workflows.dispatch.TasksDispatcher", "TASKS_BACKEND": ALIAS}
RUN_INSTANCE = "durable_workflows.tasks_dispatch.run_instance"
READY = re.compile(r"Starting worker worker_id=")

needs_tasks_db = pytest.mark.skipif(
    not getattr(settings, "TASKS_DB", False) or find_spec("django_tasks_db") is None,
    reason="needs django-tasks-db (pip install django-tasks-db) and Django's tasks framework")


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

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """`sig` to the process and any child; after SIGKILL (the machine lost) it is gone."""
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            self.popen.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class WorkerGroup:
    """`count` db_worker processes, started and killed together, as a qcluster's workers are."""

    owner: DbWorkers
    label: str
    count: int
    processes: list[Process] = field(default_factory=list)

    def start(self) -> WorkerGroup:
        self.processes = [self.owner.worker(f"{self.label}{len(self.owner.started)}") for _ in range(self.count)]
        return self

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.processes if READY.search(p.log())]

    def wait_ready(self, timeout: float = 60) -> WorkerGroup:
        wait_until(lambda: len(self.worker_pids()) == self.count, timeout=timeout, interval=0.1,
                   message=f"the db_workers {self.label} to start\n{self.owner.logs()}")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for process in self.processes:
            process.kill(sig)


@dataclass
class DbWorkers:
    """db_worker processes and one ticker on the test database, sharing one step log."""

    env: dict[str, str]
    log_dir: Path
    step_log: Path
    name: str
    started: list[Process] = field(default_factory=list)
    ticking: Process | None = None

    @property
    def clusters(self) -> DbWorkers:
        return self

    def _start(self, label: str, *args: str) -> Process:
        process = Process(list(args), self.env, self.log_dir / f"{label}.log").start()
        self.started.append(process)
        return process

    def worker(self, label: str) -> Process:
        return self._start(label, "db_worker", "--backend", ALIAS, "--interval", "0.1", "--no-startup-delay",
                           "--no-reload", "--worker-id", f"{self.name}-{label}")

    def ticker(self) -> Process:
        self.ticking = self._start("ticker", "durable_workflows", "ticker", "--name", self.name)
        return self.ticking

    def start(self, label: str = "a", workers: int = 1, ready: bool = True, **env: object) -> WorkerGroup:
        """Like `Clusters.start`: `workers` db_workers, and the ticker a cluster would have.
        The environment of a qcluster (`env`) is not theirs; the timings are the fixture's."""
        group = WorkerGroup(self, label, workers).start()
        if self.ticking is None:
            self.ticker()
        return group.wait_ready() if ready else group

    def executions(self) -> list[steplog.Execution]:
        return steplog.read(self.step_log)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.stem} (pid {p.pid})\n{p.log()[-3000:]}" for p in self.started)

    def wait_completed(self, handle: Any, timeout: float = 40) -> None:
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
           "DW_LEASE_SECONDS": "3", "DW_HEARTBEAT_SECONDS": "1", "DW_REDISPATCH_AFTER_SECONDS": "30",
           "PYTHONUNBUFFERED": "1"}
    setup = DbWorkers(env, tmp_path, step_log, f"dbw{uuid.uuid4().hex[:8]}")
    try:
        with override_settings(DURABLE_WORKFLOWS=DISPATCHER):
            yield setup
    finally:
        setup.close()


def run_tasks() -> int:
    """How many runs went to the db_workers as tasks of the "db" alias."""
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(task_path=RUN_INSTANCE, backend_name=ALIAS).count()
