import os

import pytest
from django.db import connection

from tests.testapp import event_workflows, fault_workflows, patch_workflows  # noqa: F401 (registers them)
from tests.testapp.engine_workflows import GATES, SEEN
from tests.testapp.workflows import CALLS


def pytest_collection_modifyitems(config, items):
    on_postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres", "postgresql"))
    skip = pytest.mark.skip(reason="needs DATABASE_URL pointing at PostgreSQL")
    for item in items:
        if "requires_postgres" in item.keywords and not on_postgres:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _reset_calls():
    """Step call counters start empty; gates a test left closed are opened afterwards."""
    CALLS.clear()
    SEEN.clear()
    fault_workflows.RAN.clear()
    fault_workflows.OBSERVED.clear()
    fault_workflows.DURING.clear()
    patch_workflows.VERSION["v"] = 1  # the code "installed" before a test deploys another
    yield
    patch_workflows.VERSION["v"] = 1
    for gate in fault_workflows.GATES.values():
        gate.set()
    fault_workflows.GATES.clear()
    for gate in GATES.values():
        gate.set()
    GATES.clear()
    CALLS.clear()
    SEEN.clear()


@pytest.fixture
def vendor():
    return connection.vendor


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Before the test databases are dropped: no lease a test left registered keeps the
    heartbeat thread reconnecting, and no connection of another thread is still open (on
    PostgreSQL, DROP DATABASE refuses while one is)."""
    yield
    from django.db import connections

    from durable_workflows.engine import heartbeat

    with heartbeat._lock:
        heartbeat._active.clear()
    with django_db_blocker.unblock():
        for alias in connections:
            db = connections[alias]
            # Only the databases this run created (test_dw_<pid>...), never a shared one.
            if db.vendor != "postgresql" or not str(db.settings_dict["NAME"]).startswith("test_dw_"):
                continue
            with db.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            db.close()
