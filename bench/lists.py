"""Instance lists on a million instances: the admin list and the API's pages.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_lists python bench/lists.py [--keep]

Creates the database named in DATABASE_URL (default `bench_lists`, a database of its own),
fills it with BENCH_LISTS instances (default 1,000,000, the mix of bench/admin.py: 30 days,
90% completed, 4% failed, 1/7 per workflow, three step records each), made in SQL with
generate_series, then ANALYZEs as autovacuum would. Times, in BENCH_ROUNDS interleaved rounds
through Django's test client as a logged-in superuser: the admin list (first page, filtered
by a state, page 10,000), the dashboard, and the API's first page, its page 10,000 (the cursor
that following `next` from the first page would reach, made here from the row before it) and
filtered lists. Prints medians and p90s; asserts nothing. Drops the database at the end
unless `--keep` (a kept database is reused by the next run, without filling it again).
PostgreSQL only.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.lists_settings")

N = int(os.environ.get("BENCH_LISTS", "1000000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
DEEP_PAGE = 10_000
API = "/api/workflows/instances/"
ADMIN = "/admin/durable_workflows/workflowinstance/"


def main() -> None:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_lists")
    os.environ["DATABASE_URL"] = url
    from bench.workers import _create_postgres_database

    _create_postgres_database(url)
    try:
        measure()
    finally:
        if "--keep" not in sys.argv:
            _drop_postgres_database(url)


def measure() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from bench.admin import _fill
    from bench.tables import markdown
    from durable_workflows.models import WorkflowInstance

    call_command("migrate", verbosity=0)
    if WorkflowInstance.objects.count() != N:
        began = time.perf_counter()
        _fill(connection, N)
        print(f"filled {N:,} instances in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE durable_workflows_workflowinstance")
            cursor.execute("VACUUM ANALYZE durable_workflows_steprecord")
    user, _ = get_user_model().objects.get_or_create(username="bench-lists", defaults={
        "is_staff": True, "is_superuser": True})
    browser = Client()
    browser.force_login(user)
    pages = {
        "admin: instance list": ADMIN,
        "admin: list, state = failed": f"{ADMIN}?state__exact=failed",
        f"admin: list, page {DEEP_PAGE:,}": f"{ADMIN}?p={DEEP_PAGE}",
        "admin: dashboard": f"{ADMIN}dashboard/",
        "API: first page": API,
        f"API: page {DEEP_PAGE:,}": _deep_api_page(WorkflowInstance),
        "API: state = failed": f"{API}?state=failed",
        "API: workflow = bench.flow.3": f"{API}?workflow=bench.flow.3",
    }
    timings: dict[str, list[float]] = {name: [] for name in pages}
    for name, path in pages.items():  # warm up: connection, templates, caches
        response = browser.get(path)
        assert response.status_code == 200, (name, response.status_code)
        if name.startswith("API"):
            body = response.json()
            print(f"{name}: count {body['count']:,}{' (estimated)' if body.get('count_is_estimate') else ''}, "
                  f"{len(body['results'])} results", file=sys.stderr)
    for _ in range(ROUNDS):
        for name, path in pages.items():
            began = time.perf_counter()
            response = browser.get(path)
            timings[name].append(time.perf_counter() - began)
            assert response.status_code == 200, (name, response.status_code)
    body = []
    for name, values in timings.items():
        values.sort()
        body.append([name, f"{statistics.median(values) * 1000:.0f} ms",
                     f"{values[max(0, int(len(values) * 0.9) - 1)] * 1000:.0f} ms"])
    print(f"\nLists on {N:,} instances, PostgreSQL ({ROUNDS} interleaved rounds)\n")
    print(markdown(["page", "median", "p90"], body))


def _deep_api_page(model) -> str:
    """Page DEEP_PAGE of the API's list, 50 a page: the cursor `next` carries after page
    DEEP_PAGE - 1 (its last row), or `?page=` for a paginator that takes page numbers."""
    from durable_workflows.api import pagination

    last_before = model.objects.order_by("-created_at", "-pk")[(DEEP_PAGE - 1) * 50 - 1]
    if hasattr(pagination, "cursor_after"):
        return f"{API}?cursor={pagination.cursor_after(last_before)}"
    return f"{API}?page={DEEP_PAGE}"


def _drop_postgres_database(url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
