"""`manage.py durable_workflows <sub-command>`: each sub-command, and each way it refuses."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone
from django_q.models import Schedule

from durable_workflows import client
from durable_workflows.models import Alarm, Event, StepRecord, WorkflowInstance
from tests.helpers import manage
from tests.testapp.workflows import CALLS

pytestmark = pytest.mark.django_db

NO_DISPATCH = {"DISPATCHER": "tests.test_engine_client.NoDispatch"}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("durable_workflows", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return str(caught.value)


def age(instance_id: str, days: int) -> None:
    WorkflowInstance.objects.filter(pk=instance_id).update(
        finished_at=timezone.now() - timedelta(days=days)
    )


# -- start -----------------------------------------------------------------------------------


def test_start_with_keyword_arguments_and_wait():
    output = run("start", "tests.greet", "--input", '{"name": "Ada", "punctuation": "?"}', "--wait")
    handle = client.list(workflow="tests.greet")[0]
    assert f"Started: tests.greet {handle.instance_id} (Completed)" in output
    assert 'Completed: "Hello, Ada?"' in output
    assert handle.result() == "Hello, Ada?"


def test_start_with_positional_arguments_and_an_id():
    output = run("start", "tests.three_steps", "--input", "[5]", "--id", "count-5")
    assert output.strip() == "Started: tests.three_steps count-5 (Completed)"
    assert client.get("count-5").result() == 8


def test_options_can_be_given_as_keyword_arguments_to_call_command():
    out = io.StringIO()
    call_command("durable_workflows", "start", "tests.greet", input='{"name": "Ada"}', id="kw", wait=True, stdout=out)
    assert 'Completed: "Hello, Ada!"' in out.getvalue()
    age("kw", days=40)
    call_command("durable_workflows", "purge", older_than="30d", state="completed", stdout=out)
    assert not WorkflowInstance.objects.filter(pk="kw").exists()


def test_start_again_with_the_same_id_runs_nothing():
    run("start", "tests.greet", "--input", '["Ada"]', "--id", "once")
    output = run("start", "tests.greet", "--input", '["Ada"]', "--id", "once")
    assert output.strip() == "Already exists: tests.greet once (Completed)"
    assert CALLS["compose"] == 1
    assert WorkflowInstance.objects.count() == 1


def test_start_and_wait_for_a_failure_exits_non_zero():
    out = io.StringIO()
    with pytest.raises(CommandError, match="ended Failed"):
        call_command("durable_workflows", "start", "tests.flaky", "--input", '{"failures": 9, "max_attempts": 1}',
                     "--id", "doomed", "--wait", stdout=out)
    assert "Error     ConnectionError: failure 1" in out.getvalue()
    assert client.get("doomed").state == "failed"


def test_start_and_wait_gives_up_after_the_timeout():
    message = refused("start", "tests.nap", "--id", "napping", "--wait", "--timeout", "0.1")
    assert message == "instance 'napping' is still Paused after 0.1 s; it goes on without you"
    assert client.get("napping").state == "paused"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["start", "no.such.flow"], "unknown workflow 'no.such.flow' (registered:"),
        (["start", "tests.greet", "--input", "{name: Ada}"], "--input is not valid JSON"),
        (["start", "tests.greet", "--input", '"Ada"'], "--input must be a JSON object (keyword arguments) or array"),
        (["start", "tests.greet", "--input", "3"], "not int"),
        (["start", "tests.greet", "--input", '{"nom": "Ada"}'], "workflow 'tests.greet' cannot take these arguments"),
        (["start", "tests.greet", "--input", '["a", "b", "c"]'], "too many positional arguments"),
        (["start", "tests.greet", "--input", '["Ada"]', "--id", " "], "instance_id must be non-empty text"),
        (["start"], "the following arguments are required: NAME"),
    ],
)
def test_start_refuses_bad_arguments_and_stores_nothing(args, expected):
    assert expected in refused(*args)
    assert WorkflowInstance.objects.count() == 0
    assert not CALLS


# -- list ------------------------------------------------------------------------------------


def test_list_newest_first_with_filters():
    client.start("tests.greet", "Ada", instance_id="greet-1")
    client.start("tests.nap", instance_id="nap-1")
    client.start("tests.three_steps", instance_id="count-1")
    lines = run("list").splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "STATE", "CREATED", "FINISHED"]
    assert [line.split()[0] for line in lines[1:]] == ["count-1", "nap-1", "greet-1"]
    assert lines[2].split()[:3] == ["nap-1", "tests.nap", "Paused"]
    assert lines[2].split()[-1] == "-"
    assert [line.split()[0] for line in run("list", "--state", "completed").splitlines()[1:]] == ["count-1", "greet-1"]
    assert [line.split()[0] for line in run("list", "--state", "Paused").splitlines()[1:]] == ["nap-1"]
    assert [line.split()[0] for line in run("list", "--workflow", "tests.greet").splitlines()[1:]] == ["greet-1"]
    assert [line.split()[0] for line in run("list", "--limit", "1").splitlines()[1:]] == ["count-1"]
    assert run("list", "--state", "failed").strip() == "No instances."


def test_list_refuses_bad_options():
    message = refused("list", "--state", "asleep")
    assert "--state: unknown state 'asleep'" in message
    assert "paused" in message
    assert refused("list", "--limit", "0") == "--limit must be at least 1"
    assert "invalid int value" in refused("list", "--limit", "many")


# -- show ------------------------------------------------------------------------------------


def test_show_a_paused_instance_with_its_step_table():
    client.start("tests.nap", "3h", instance_id="napping")
    Alarm.objects.filter(instance_id="napping").update(
        fire_at=timezone.now() + timedelta(hours=3, minutes=12, seconds=30)
    )
    output = run("show", "napping")
    assert "Instance  napping" in output
    assert "Workflow  tests.nap" in output
    assert "State     Paused" in output
    assert 'Input     ["3h"]' in output
    assert "Resumes   in 3 h 12 min (" in output
    table = output.split("\n\n")[-1].splitlines()
    assert table[0].split() == ["#", "NAME", "KIND", "STATE", "ATTEMPTS", "STARTED", "DURATION", "RESULT"]
    assert table[1].split()[:5] == ["0", "Before", "step", "completed", "1"]
    assert table[1].split()[-1] == "1"
    assert table[2].split()[:4] == ["1", "sleep", "sleep", "sleeping"]
    assert "until" in table[2]


def test_show_says_what_a_queued_instance_waits_for(tmp_path):
    log = str(tmp_path / "log")
    client.start("flow.one_at_a_time", log, True, instance_id="holder")  # keeps the one slot
    client.start("flow.one_at_a_time", log, instance_id="behind", priority=7)
    output = run("show", "behind")
    assert "Priority  7" in output
    assert "Queue     1 ahead of it for a concurrency slot" in output
    client.start("tests.greet", "later", instance_id="later", delay="2h")
    assert "Starts    in 2 h (" in run("show", "later")


def test_show_a_completed_and_a_failed_instance():
    client.start("tests.greet", "Ada", instance_id="done")
    assert 'Result    "Hello, Ada!"' in run("show", "done")
    client.start("tests.flaky", failures=9, max_attempts=1, instance_id="broken")
    output = run("show", "broken")
    assert "State     Failed" in output
    assert "Error     ConnectionError: failure 1" in output
    assert "Traceback (most recent call last)" in output
    assert "ConnectionError: failure 1" in output.split("\n\n")[-1]


def test_show_an_unknown_id():
    assert refused("show", "nope") == "no workflow instance with id 'nope'"
    assert "the following arguments are required: ID" in refused("show")


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_a_paused_instance_with_a_reason():
    client.start("tests.nap", instance_id="napping")
    assert run("cancel", "napping", "--reason", "not needed").strip() == "Cancelled napping."
    handle = client.get("napping")
    assert handle.state == "cancelled"
    assert handle.instance.cancel_reason == "not needed"
    assert "Reason    not needed" in run("show", "napping")


def test_cancel_refuses_a_finished_or_unknown_instance():
    client.start("tests.greet", "Ada", instance_id="done")
    assert refused("cancel", "done") == "cannot cancel instance 'done': it is already Completed"
    assert client.get("done").state == "completed"
    assert refused("cancel", "nope") == "no workflow instance with id 'nope'"


# -- recover and fire-alarms -----------------------------------------------------------------


def test_recover_sends_a_lost_task_again():
    assert run("recover").strip() == "Re-dispatched 0 instances."
    with override_settings(DURABLE_WORKFLOWS=NO_DISPATCH):
        client.start("tests.greet", "Ada", instance_id="lost")
    assert client.get("lost").state == "queued"
    WorkflowInstance.objects.filter(pk="lost").update(dispatched_at=timezone.now() - timedelta(hours=1))
    assert run("recover").strip() == "Re-dispatched 1 instance: lost."
    assert client.get("lost").result() == "Hello, Ada!"


def test_fire_alarms_resumes_a_due_sleep():
    client.start("tests.nap", instance_id="napping")
    assert run("fire-alarms").strip() == "Fired 0 alarms."
    Alarm.objects.filter(instance_id="napping").update(fire_at=timezone.now() - timedelta(seconds=1))
    assert run("fire-alarms").strip() == "Fired 1 alarm: napping."
    assert client.get("napping").result() == "rested"
    assert refused("fire-alarms", "--limit", "0") == "--limit must be at least 1"


# -- setup -----------------------------------------------------------------------------------


def test_setup_creates_the_schedules_once():
    Schedule.objects.filter(name__startswith="durable_workflows.").delete()
    output = run("setup")
    assert "Schedule durable_workflows.fire_alarms: created" in output
    assert "Schedule durable_workflows.recover: created" in output
    assert "up to date" in run("setup")
    assert Schedule.objects.filter(name__startswith="durable_workflows.").count() == 2


# -- purge -----------------------------------------------------------------------------------


@pytest.fixture
def finished_and_unfinished():
    client.start("tests.greet", "old", instance_id="old-completed")
    client.start("tests.flaky", failures=9, max_attempts=1, instance_id="old-failed")
    client.cancel(client.start("tests.nap", instance_id="old-cancelled").instance_id)
    client.start("tests.greet", "new", instance_id="new-completed")
    client.start("tests.nap", instance_id="still-paused")
    for instance_id in ("old-completed", "old-failed", "old-cancelled"):
        age(instance_id, days=40)
    age("new-completed", days=2)


def remaining() -> list[str]:
    return sorted(WorkflowInstance.objects.values_list("pk", flat=True))


def test_purge_deletes_only_old_finished_instances(finished_and_unfinished):
    assert Event.objects.filter(instance__pk__startswith="old-").count() >= 3
    output = run("purge", "--older-than", "30d")
    assert output.startswith("Deleted 3 instances finished before ")
    assert remaining() == ["new-completed", "still-paused"]
    assert not StepRecord.objects.filter(instance__pk__startswith="old-").exists()
    # The event log has no database foreign key: Django deletes it with its instance.
    assert not Event.objects.filter(instance__pk__startswith="old-").exists()
    assert Event.objects.filter(instance_id="new-completed").exists()


def test_purge_one_state(finished_and_unfinished):
    assert run("purge", "--older-than", "30 days", "--state", "failed").startswith("Deleted 1 instance ")
    assert "old-failed" not in remaining()
    assert "old-completed" in remaining()


def test_purge_dry_run_deletes_nothing(finished_and_unfinished):
    assert run("purge", "--older-than", "1d", "--dry-run").startswith("Would delete 4 instances ")
    assert len(remaining()) == 5


def test_purge_shows_progress_when_it_walks_many_rows():
    for n in range(5):
        client.start("tests.greet", f"user {n}", instance_id=f"greet-{n}")
    WorkflowInstance.objects.update(finished_at=timezone.now() - timedelta(days=31))
    out, err = io.StringIO(), io.StringIO()
    call_command("durable_workflows", "purge", "--older-than", "30d", "--batch-size", "2", stdout=out, stderr=err)
    assert out.getvalue().startswith("Deleted 5 instances ")
    assert "\r[############------------------] 2/5" in err.getvalue()
    assert "\r[##############################] 5/5" in err.getvalue()
    assert remaining() == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["purge", "--older-than", "a while"], "invalid --older-than 'a while'"),
        (["purge", "--older-than", "30 fortnights"], "unknown unit 'fortnights'"),
        (["purge", "--older-than=-5d"], "must not be negative"),
        (["purge", "--older-than", "1000000d"], "longer than a thousand years"),
        (["purge", "--older-than", "30d", "--state", "paused"],
         "--state paused is not finished; purge deletes only cancelled, completed, failed instances"),
        (["purge", "--older-than", "30d", "--state", "asleep"], "--state: unknown state 'asleep'"),
        (["purge", "--older-than", "30d", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["purge"], "the following arguments are required: --older-than"),
    ],
)
def test_purge_refuses_bad_arguments_and_deletes_nothing(finished_and_unfinished, args, expected):
    assert expected in refused(*args)
    assert len(remaining()) == 5


def test_an_unknown_or_missing_sub_command_is_refused():
    assert "invalid choice: 'explode'" in refused("explode")
    assert "the following arguments are required: <sub-command>" in refused()


# -- a real process --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_command_in_a_real_process_exits_zero_or_non_zero():
    done = manage("start", "tests.greet", "--input", '["Ada"]', "--id", "from-shell", "--wait")
    assert done.returncode == 0, done.stderr
    assert 'Completed: "Hello, Ada!"' in done.stdout
    assert client.get("from-shell").result() == "Hello, Ada!"

    shown = manage("show", "from-shell")
    assert shown.returncode == 0, shown.stderr
    assert "State     Completed" in shown.stdout

    refused_cancel = manage("cancel", "from-shell")
    assert refused_cancel.returncode == 1
    assert "CommandError: cannot cancel instance 'from-shell': it is already Completed" in refused_cancel.stderr

    bad_input = manage("start", "tests.greet", "--input", "not json")
    assert bad_input.returncode == 1
    assert "CommandError: --input is not valid JSON" in bad_input.stderr
    assert WorkflowInstance.objects.count() == 1


def test_list_of_a_workflow_neither_registered_nor_stored_is_refused():
    assert "unknown workflow 'tests.gret'" in refused("list", "--workflow", "tests.gret")
    client.start("tests.greet", "Ada")
    assert "tests.greet" in run("list", "--workflow", "tests.greet")
