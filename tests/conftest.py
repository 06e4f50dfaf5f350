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
