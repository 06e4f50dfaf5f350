"""Key rotation while real `qcluster` workers resume instances: every value ends under the
newest key, and every instance finishes with what it was sent."""

from __future__ import annotations

import pytest

import tests.workers.workflows  # noqa: F401  (registers the workflows the clusters run)
from durable_workflows import client, send_event
from durable_workflows.codecs import key_id, sealed_key
from durable_workflows.models import WorkflowInstance
from tests.helpers import wait_until
from tests.test_codecs import NEW, OLD, call, codec, stored_values
from tests.test_workers_events import waiting
from tests.workers.fixtures import workers_fixture  # noqa: F401  (the `workers` fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_rotate_keys_while_workers_write_leaves_every_value_under_the_newest_key(workers):
    workers.clusters.start("a", workers=2, DW_CODEC_KEYS=f"{NEW},{OLD}")
    ids = [f"rotate-{n}" for n in range(30)]
    with codec(OLD):  # a web process not yet given the new key
        for pk in ids:
            client.start("workers.await_event", 0.05, instance_id=pk)
        wait_until(lambda: waiting(ids), timeout=120, interval=0.2,
                   message=f"30 instances to wait\n{workers.clusters.logs()}")
        for pk in ids:
            assert send_event(pk, "go", {"for": pk}) is True
    with codec(NEW, OLD):
        call("rotate-keys", "--chunk-size", "7")  # while the workers resume the instances
        wait_until(lambda: WorkflowInstance.objects.filter(pk__in=ids, state="completed").count() == len(ids),
                   timeout=120, interval=0.2, message=f"30 instances to finish\n{workers.clusters.logs()}")
        assert call("rotate-keys", "--dry-run").startswith("Would rewrite 0 values")
    assert {sealed_key(value) for value in stored_values()} == {key_id(NEW)}
    with codec(NEW):  # the old key removed
        assert [client.get(pk).result() for pk in ids] == [{"for": pk} for pk in ids]
