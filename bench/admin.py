"""Admin benchmark: the instance list and the dashboard on a big table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dw_admin python bench/admin.py   # BENCH_ADMIN=1000000

Fills the database (created if missing) with BENCH_ADMIN instances (default 1,000,000) spread
over 30 days (90% completed, 4% failed, 3% paused, 1% running, 1% queued, 1% cancelled), three
step records each, made in SQL, then ANALYZEs as autovacuum would. Times, in interleaved rounds
through Django's test client as a logged-in superuser: the list page, the list filtered by a
state, the dashboard. Prints a table; asserts nothing. PostgreSQL only.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.admin_settings")

N = int(os.environ.get("BENCH_ADMIN", "1000000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))


def main() -> None:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dw_admin")
    os.environ["DATABASE_URL"] = url
    from bench.workers import _create_postgres_database

    _create_postgres_database(url)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from django.test import Client

    from durable_workflows.models import WorkflowInstance

    call_command("migrate", verbosity=0)
    if WorkflowInstance.objects.count() != N:
        began = time.perf_counter()
        _fill(connection, N)
        print(f"filled {N:,} instances in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE durable_workflows_workflowinstance")
        cursor.execute("VACUUM ANALYZE durable_workflows_steprecord")
    user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={
        "is_staff": True, "is_superuser": True})
    browser = Client()
    browser.force_login(user)
    pages = {
        "instance list": "/admin/durable_workflows/workflowinstance/",
        "list, state = failed": "/admin/durable_workflows/workflowinstance/?state__exact=failed",
        "dashboard": "/admin/durable_workflows/workflowinstance/dashboard/",
    }
    timings: dict[str, list[float]] = {name: [] for name in pages}
    for path in pages.values():  # warm up: connection, templates, caches
        assert browser.get(path).status_code == 200, path
    # What the list's counts cost before they were capped: one GROUP BY over every row.
    timings["(before) counts by state, GROUP BY"] = []
    for _ in range(ROUNDS):
        for name, path in pages.items():
            began = time.perf_counter()
            response = browser.get(path)
            timings[name].append(time.perf_counter() - began)
            assert response.status_code == 200
        began = time.perf_counter()
        list(WorkflowInstance.objects.order_by().values_list("state").annotate(n=Count("*")))
        timings["(before) counts by state, GROUP BY"].append(time.perf_counter() - began)
    print(f"\n| admin on {N:,} instances, PostgreSQL ({ROUNDS} interleaved rounds) | median | p90 |")
    print("|---|---|---|")
    for name, values in timings.items():
        values.sort()
        print(f"| {name} | {statistics.median(values) * 1000:.0f} ms | {values[int(len(values) * 0.9) - 1] * 1000:.0f} ms |")


def _fill(connection, n: int) -> None:
    table, steps = "durable_workflows_workflowinstance", "durable_workflows_steprecord"
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {steps}, {table} CASCADE")
        cursor.execute(f"""
            INSERT INTO {table} (id, workflow, input, state, result, meta, created_at, started_at, updated_at,
                finished_at, dispatched_at, redispatches, run_count, last_mode, lease_owner, lease_expires_at,
                epoch, recovery_count, family_pending, cancel_requested, cancel_reason, error_type,
                error_message, error_traceback, trace_parent, slot_held)
            SELECT 'bench-' || g, 'bench.flow.' || (g %% 7), '[]',
                CASE WHEN g %% 100 < 90 THEN 'completed' WHEN g %% 100 < 94 THEN 'failed'
                     WHEN g %% 100 < 97 THEN 'paused' WHEN g %% 100 < 98 THEN 'running'
                     WHEN g %% 100 < 99 THEN 'queued' ELSE 'cancelled' END,
                NULL, '{{}}', t, t, t + interval '2 seconds',
                CASE WHEN g %% 100 < 94 OR g %% 100 >= 99 THEN t + interval '2 seconds' END,
                t, 0, 1, 'fresh', '', t + interval '30 seconds', 1, 0, false, false, '',
                CASE WHEN g %% 100 BETWEEN 90 AND 93 THEN 'ValueError' ELSE '' END, '', '', '', false
            FROM generate_series(1, %s) g, LATERAL (SELECT now() - (g %% 2592000) * interval '1 second' AS t) at
        """, [n])
        cursor.execute(f"""
            INSERT INTO {steps} (instance_id, branch, position, name, kind, state, result, attempts,
                started_at, finished_at, error_type, error_message, error_traceback, error_replay)
            SELECT i.id, '', p, 'Step ' || p, 'step', 'completed', '1', 1,
                i.created_at + p * interval '500 milliseconds',
                i.created_at + p * interval '500 milliseconds' + ((hashtext(i.id) & 1023) * interval '1 millisecond'),
                '', '', '', ''
            FROM {table} i, generate_series(0, 2) p
        """)


if __name__ == "__main__":
    main()
