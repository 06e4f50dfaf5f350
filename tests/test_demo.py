"""The README's first command: example_project/demo.py, run end to end as a newcomer runs it.

It migrates a fresh database, runs real qcluster workers, kills one mid-step and watches the
order resume. The test checks what the demo promises on its output, what it leaves in the
database, and that none of its worker processes outlives it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dj_database_url
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "example_project" / "demo.py"

pytestmark = [
    pytest.mark.slow,
    # The demo runs on SQLite whatever the suite runs on: the SQLite pass runs it, once.
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the demo runs on SQLite; the SQLite pass runs it"),
]

PROMISES = (
    "== 1. Database: migrating",
    "== 2. A worker (pid",
    "order 1002     event.waiting       payment confirmed",
    "order 1001     event.received      payment confirmed",
    "event_id='psp-delivery-1001') -> False: a repeat, ignored",
    "order 1002     retry.scheduled     Charge card: attempt 2 in 1 s",
    "order 1002     workflow.completed",
    "report         child.started",
    "report         workflow.paused",
    "== 3. Crash test: kill the worker in the middle of a step",
    "SIGKILL to worker pid",
    "The database still says Running",
    "order 1003     workflow.recovered",
    "Fetch order              ran 1 time   finished before the crash: not run again",
    "Pack parcel              ran 2 times  interrupted by the crash, run again by the new worker",
    "Charge card              ran 1 time",
    "== 5. Done in",
    "example_project/manage.py runserver",
    "http://127.0.0.1:8000/admin/",
)


def run_demo(**env: str) -> tuple[subprocess.CompletedProcess, float]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    environment.update(env)
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(DEMO)], cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=240,
    )
    return result, time.monotonic() - began


def check_output(result: subprocess.CompletedProcess, seconds: float) -> None:
    print(f"demo took {seconds:.1f} s")
    assert result.returncode == 0, f"demo failed:\n{result.stdout}\n{result.stderr}"
    for promise in PROMISES:
        assert promise in result.stdout, f"missing {promise!r} in:\n{result.stdout}"
    assert "Traceback" not in result.stdout + result.stderr
    worker_pids = [int(p) for p in re.findall(r"worker \(pid (\d+)\)", result.stdout)]
    assert len(worker_pids) == 2, result.stdout
    for pid in worker_pids:  # each worker led its own process group: none of it may be left
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


# The instances the schedule of shop.nightly_report started (the worker's first pass starts its
# latest fire time), and their children: how far they got depends on when the demo ended.
SCHEDULED = "(id LIKE 'shop.nightly_report@%' OR COALESCE(parent_id, '') LIKE 'shop.nightly_report@%')"


def sqlite_states(database: Path) -> dict[str, int]:
    """The states of the instances the demo started itself."""
    with sqlite3.connect(database) as db:
        return dict(db.execute(
            f"SELECT state, COUNT(*) FROM durable_workflows_workflowinstance WHERE NOT {SCHEDULED} GROUP BY state"
        ).fetchall())


def scheduled_reports(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT COUNT(*) FROM durable_workflows_workflowinstance WHERE id LIKE 'shop.nightly_report@%' AND parent_id IS NULL"
        ).fetchone()[0]


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the SQLite run of the suite covers it")
def test_the_demo_runs_end_to_end_on_sqlite_and_again(tmp_path):
    database = tmp_path / "demo.sqlite3"
    result, seconds = run_demo(SQLITE_PATH=str(database))
    check_output(result, seconds)
    assert "order-1001-run1" in result.stdout
    # Three orders and the report's three region children completed; the report sleeps.
    assert sqlite_states(database) == {"completed": 6, "paused": 1}
    assert scheduled_reports(database) == 1
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM auth_user WHERE is_superuser").fetchone()[0] == 1

    again, seconds = run_demo(SQLITE_PATH=str(database))
    check_output(again, seconds)
    assert "order-1001-run2" in again.stdout
    assert sqlite_states(database) == {"completed": 12, "paused": 2}
    # The same fire time is not started again (a second one only if 02:00 UTC came in between).
    assert scheduled_reports(database) in (1, 2)


@pytest.mark.requires_postgres
def test_the_demo_runs_on_postgresql_with_database_url():
    import psycopg

    server = dj_database_url.parse(os.environ["DATABASE_URL"])
    name = f"dw_demo_{os.getpid()}"
    admin = psycopg.connect(
        host=server["HOST"], port=server["PORT"] or 5432, user=server["USER"],
        password=server["PASSWORD"] or None, dbname="postgres", autocommit=True,
    )
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
        url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
        result, seconds = run_demo(DATABASE_URL=url)
        check_output(result, seconds)
        assert "== 1. Database: migrating django.db.backends.postgresql" in result.stdout
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
