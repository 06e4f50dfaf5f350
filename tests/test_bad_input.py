"""Bad input to the public API: a clear error that names what was wrong, and nothing stored."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from durable_workflows import RetryPolicy, client, start, workflow
from durable_workflows.models import Event, StepRecord, WorkflowInstance

pytestmark = pytest.mark.django_db(transaction=True)


def quick(value):
    return value


def unescaped(name):
    """Inputs cannot carry a NUL (the serializer refuses it), so the workflows below make it
    from this stand-in, to see what their primitives do with such a name."""
    return name.replace("<NUL>", "\x00") if isinstance(name, str) else name


def escaped(name):
    return name.replace("\x00", "<NUL>") if isinstance(name, str) else name


@workflow("bad_input.sleep_named")
def sleep_named(wf, name):
    wf.sleep("0s", name=unescaped(name))
    return wf.step("After", quick, "done")


@pytest.mark.parametrize("name", [5, ["a"], "   ", "x" * 256, "a\x00b"])
def test_a_sleep_name_that_is_not_short_text_fails_the_instance_naming_it(name):
    handle = start("bad_input.sleep_named", escaped(name))
    assert handle.state == "failed" and handle.error["type"] == "ValueError"
    assert "a sleep name must" in handle.error["message"] and repr(name) in handle.error["message"]


@pytest.mark.parametrize("name", ["nap", ""])  # "" is the default name, as it always was
def test_a_sleep_name_replays(name):
    assert start("bad_input.sleep_named", name).result() == "done"


@workflow("bad_input.step_named")
def step_named(wf, name):
    return wf.step(unescaped(name), quick, 1)


@pytest.mark.parametrize("name", [7, "", "   ", "x" * 256, "a\x00b"])
def test_a_step_name_that_is_not_short_text_fails_the_instance_naming_it(name):
    handle = start("bad_input.step_named", escaped(name))
    assert handle.state == "failed" and "a step name must" in handle.error["message"]


@pytest.mark.parametrize("name", ["x" * 256, "a\x00b"])
def test_a_workflow_name_the_database_cannot_keep_is_refused(name):
    with pytest.raises(ValueError, match="a workflow name must be at most 255 characters"):
        workflow(name)(lambda wf: None)


@pytest.mark.parametrize("multiplier", [float("nan"), float("inf"), 0, -2])
def test_a_multiplier_that_is_not_a_positive_finite_number_is_refused(multiplier):
    with pytest.raises(ValueError, match="multiplier must be a positive, finite number"):
        RetryPolicy(max_attempts=3, multiplier=multiplier)


@workflow("bad_input.long_timeout")
def long_timeout(wf):
    return wf.step("Patient", quick, "ok", timeout="20000 weeks")  # longer than a clock can wait


def test_a_step_timeout_past_what_a_clock_can_wait_is_none():
    assert start("bad_input.long_timeout").result() == "ok"


def test_client_calls_refuse_bad_arguments_naming_them():
    handle = start("tests.nap", "1h", instance_id="napping")
    with pytest.raises(ValueError, match="limit must be a whole number"):
        client.list(limit=-1)
    with pytest.raises(ValueError, match="limit must be a whole number"):
        client.list(limit="2")
    with pytest.raises(TypeError, match="workflow must be a workflow's name"):
        client.list(workflow=5)
    with pytest.raises(TypeError, match="a meta key is text"):
        client.meta("napping", ["a"])
    with pytest.raises(ValueError, match="timeout must be a number of seconds"):
        handle.wait(timeout="1")
    with pytest.raises(ValueError, match="poll must be a number of seconds"):
        handle.wait(timeout=0, poll=-1)
    with pytest.raises(TypeError, match="a cancel reason must be text"):
        client.cancel("napping", reason=["a"])
    assert client.get("napping").state == "paused"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("durable_workflows", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.parametrize("args, message", [
    (["start", "tests.greet", "--input", "[" * 5000 + "]" * 5000], "--input is nested too deeply"),
    (["start", "tests.greet", "--input", '["Ada"]', "--wait", "--timeout", "nan"], "--timeout must be"),
    (["start", "tests.greet", "--input", '["Ada"]', "--wait", "--timeout=-1"], "--timeout must be"),
    (["send-event", "x", "ping", "--payload", "[" * 5000 + "]" * 5000], "--payload is nested too deeply"),
])
def test_commands_refuse_bad_options_before_anything_is_stored(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not WorkflowInstance.objects.exists() and not StepRecord.objects.exists() and not Event.objects.exists()


@pytest.mark.parametrize("events, error, message", [
    ({"go": object()}, "SerializationError", "the payload of event 'go'"),
    ({5: "x"}, "ValueError", "an event name must be non-empty text, got 5"),
])
def test_testing_run_checks_its_events_before_it_creates_anything(events, error, message):
    from durable_workflows import testing

    with pytest.raises(Exception, match=message) as raised:
        testing.run("tests.greet", "Ada", events=events)
    assert type(raised.value).__name__ == error
    assert not WorkflowInstance.objects.exists()


@workflow("bad_input.map_nothing")
def map_nothing(wf, retry, timeout):
    return wf.map("Each", quick, [], retry=retry, timeout=timeout)


@pytest.mark.parametrize("retry, timeout, message", [
    (3, None, "wf.map 'Each': retry must be a RetryPolicy, got 3"),
    (None, "soon", "invalid timeout of wf.map 'Each' 'soon'"),
])
def test_wf_map_checks_retry_and_timeout_with_no_items_too(retry, timeout, message):
    handle = start("bad_input.map_nothing", retry, timeout)
    assert handle.state == "failed" and message in handle.error["message"]


def test_wf_map_of_no_items_is_an_empty_list():
    assert start("bad_input.map_nothing", None, "5s").result() == []
