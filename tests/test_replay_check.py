"""The replay check before a deploy (DESIGN §10): `check_replay()` and
`manage.py durable_workflows check`."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from durable_workflows import UnknownWorkflow, check_replay, client
from durable_workflows.models import Alarm, Event, InboxMessage, StepRecord, WorkflowInstance
from tests.helpers import manage
from tests.testapp.fault_workflows import RAN
from tests.testapp.patch_workflows import VERSION

pytestmark = pytest.mark.django_db(transaction=True)


def everything() -> list:
    """Every row the engine keeps, to show a check wrote nothing."""
    return [list(model.objects.order_by("pk").values()) for model in
            (WorkflowInstance, StepRecord, Event, Alarm, InboxMessage)]


def test_a_careless_deploy_is_reported_with_the_position_and_both_names():
    old = client.start("patches.order").refresh()
    assert old.state == "paused"
    other = client.start("children.wait_nappers", 1).refresh()  # another workflow, fine
    VERSION["v"] = "careless"
    before, ran = everything(), dict(RAN)
    problems = check_replay()
    assert everything() == before and dict(RAN) == ran  # no step ran, no row changed
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.instance_id, problem.workflow, problem.error_type) == (old.instance_id, "patches.order",
                                                                           "NonDeterminismError")
    assert (problem.position, problem.branch) == (1, "")
    assert problem.recorded == "sleep 'sleep'" and problem.called == "step 'X'"
    assert other.state == "paused"


def test_the_command_lists_what_would_fail_and_exits_1():
    old = client.start("patches.order").refresh()
    fine = client.start("tests.greet", "Ada").refresh()
    assert fine.state == "completed"  # finished instances are not checked
    before = everything()
    result = manage("check", env={"DW_PATCH_VERSION": "careless"})
    assert result.returncode == 1, result.stderr
    assert (f"would fail  {old.instance_id}  patches.order at position 1: recorded sleep 'sleep', "
            f"now called step 'X'") in result.stdout
    assert "checked 1 instance of 1 workflow: 1 would fail" in result.stdout
    assert everything() == before


def test_the_patched_code_passes_the_check():
    client.start("patches.order")
    client.start("patches.branches")
    client.start("patches.async_order")
    VERSION["v"] = 2
    assert check_replay() == []
    result = manage("check", env={"DW_PATCH_VERSION": "2"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 3 instances of 3 workflows: 0 would fail" in result.stdout


def test_an_instance_of_a_workflow_no_longer_installed_is_reported():
    WorkflowInstance.objects.create(id="orphan", workflow="gone.workflow", input="[[], {}]", state="paused")
    problems = check_replay()
    assert [(p.instance_id, p.error_type) for p in problems] == [("orphan", "UnknownWorkflow")]


def test_a_workflow_no_longer_installed_can_be_named():
    WorkflowInstance.objects.create(id="orphan", workflow="gone.workflow", input="[[], {}]", state="paused")
    problems = check_replay("gone.workflow")
    assert [(p.instance_id, p.error_type) for p in problems] == [("orphan", "UnknownWorkflow")]
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("durable_workflows", "check", "--workflow", "gone.workflow", stdout=out)
    assert failed.value.returncode == 1
    assert "would fail  orphan  gone.workflow: UnknownWorkflow" in out.getvalue()
    assert "checked 1 instance of 1 workflow: 1 would fail" in out.getvalue()


def test_only_the_named_workflow_is_checked_and_an_unknown_name_is_refused():
    client.start("patches.order")
    VERSION["v"] = "careless"
    assert check_replay("children.wait_nappers") == []
    assert len(check_replay("patches.order")) == 1
    with pytest.raises(UnknownWorkflow):
        check_replay("no.such.workflow")
    with pytest.raises(CommandError, match="no.such.workflow"):
        call_command("durable_workflows", "check", "--workflow", "no.such.workflow")


def test_a_check_inside_a_transaction_leaves_it_usable():
    from django.db import transaction

    client.start("patches.order")
    VERSION["v"] = "careless"
    with transaction.atomic():
        assert len(check_replay()) == 1
        assert WorkflowInstance.objects.count() == 1


def test_an_instance_paused_inside_a_branch_replays_cleanly():
    from tests.testapp.branch_workflows import CHANGING

    paused = client.start("branches.changes").refresh()
    assert paused.state == "paused"
    assert check_replay("branches.changes") == []
    CHANGING["name"] = "Renamed"
    try:
        (problem,) = check_replay("branches.changes")
    finally:
        CHANGING["name"] = "B"
    assert (problem.branch, problem.position) == ("0:1", 1)
    assert problem.recorded == "step 'B'" and problem.called == "step 'Renamed'"
