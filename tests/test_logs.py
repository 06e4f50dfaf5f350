"""Every log record of the library says which instance, workflow and position it is about."""

from __future__ import annotations

import logging

import pytest
from django.test import override_settings

from durable_workflows import client
from durable_workflows.signals import step_started

pytestmark = pytest.mark.django_db(transaction=True)

INLINE = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}


def ours(caplog):
    return [r for r in caplog.records if r.name.startswith("durable_workflows")]


def test_records_carry_the_instance_workflow_and_position(caplog):
    def broken_receiver(**kwargs):
        raise RuntimeError("receiver bug")

    step_started.connect(broken_receiver, dispatch_uid="test_logs")
    caplog.set_level(logging.INFO, logger="durable_workflows")
    try:
        with override_settings(DURABLE_WORKFLOWS=INLINE):
            handle = client.start("tests.flaky", 5, max_attempts=1)
    finally:
        step_started.disconnect(dispatch_uid="test_logs")
    records = ours(caplog)
    receiver = next(r for r in records if "receiver" in r.getMessage())
    assert (receiver.instance_id, receiver.workflow, receiver.position) == (handle.instance_id, "tests.flaky", 0)
    failed = next(r for r in records if r.getMessage().startswith(f"workflow {handle.instance_id} failed"))
    assert (failed.instance_id, failed.workflow, failed.position) == (handle.instance_id, "tests.flaky", None)


def test_a_record_about_nothing_in_particular_says_so(caplog):
    caplog.set_level(logging.INFO, logger="durable_workflows")
    logging.getLogger("durable_workflows.ticker").info("a tick")
    [record] = [r for r in ours(caplog) if r.getMessage() == "a tick"]
    assert (record.instance_id, record.workflow, record.position) == (None, None, None)
