"""pytest fixtures for the worker tests: a broker queue of the test's own, shared by this
process (which starts workflows) and the `qcluster` processes the test starts.

On SQLite the clusters use django-q2's ORM broker, on PostgreSQL the Redis broker, so the
suite covers both brokers. The test process enqueues to the same broker: django-q2 reads its
configuration once, at import, so the fixture sets it on `django_q.conf.Conf` for the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from tests.workers import steplog
from tests.workers.cluster import Clusters

REDIS_URL = os.environ.get("DW_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class WorkerSetup:
    name: str
    broker: str
    step_log: Path
    clusters: Clusters
    #: Names of clusters of their own a test started besides `name` (another queue each).
    other_names: list[str] = field(default_factory=list)

    def executions(self) -> list[steplog.Execution]:
        return steplog.read(self.step_log)

    def another_name(self) -> str:
        """A cluster name of its own (its own queue, its own ticker), emptied after the test:
        pass it to `clusters.start` as DW_CLUSTER_NAME."""
        name = f"{self.name}x{len(self.other_names)}"
        self.other_names.append(name)
        return name


def broker_for_database() -> str:
    return "orm" if connection.vendor == "sqlite" else "redis"


@pytest.fixture(name="workers")
def workers_fixture(transactional_db, monkeypatch, tmp_path) -> Iterator[WorkerSetup]:
    from django_q.conf import Conf

    name = f"dwt{uuid.uuid4().hex[:10]}"
    broker = broker_for_database()
    for key, value in {"SYNC": False, "PREFIX": name, "CLUSTER_NAME": name}.items():
        monkeypatch.setattr(Conf, key, value)
    if broker == "redis":
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    else:
        monkeypatch.setattr(Conf, "ORM", "default")
    step_log = tmp_path / "steps.jsonl"
    monkeypatch.setenv("DW_STEP_LOG", str(step_log))
    env = {
        **os.environ,
        "DW_DB_NAME": str(connection.settings_dict["NAME"]),
        "DW_BROKER": broker,
        "DW_REDIS_URL": REDIS_URL,
        "DW_CLUSTER_NAME": name,
        "DW_STEP_LOG": str(step_log),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    clusters = Clusters(env, tmp_path)
    setup = WorkerSetup(name=name, broker=broker, step_log=step_log, clusters=clusters)
    try:
        yield setup
    finally:
        clusters.close()
        if broker == "redis":
            import redis

            client = redis.from_url(REDIS_URL)
            for each in (name, *setup.other_names):
                client.delete(f"django_q:{each}:q")
            client.close()
