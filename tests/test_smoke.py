import pytest

from durable_workflows import client, run_inline, start
from tests.testapp.workflows import CALLS

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_runs_to_completion():
    handle = start("tests.greet", "Ada")
    assert handle.state == "completed"
    assert handle.result() == "Hello, Ada!"
    assert CALLS["compose"] == 1


def test_sleep_pauses():
    handle = start("tests.nap", "1h")
    assert handle.state == "paused", handle.error
    assert handle.alarm is not None
    assert [s.name for s in handle.steps] == ["Before", "sleep"]


def test_inline():
    handle = run_inline("tests.three_steps", 1)
    assert handle.result() == 4
    assert client.get(handle.instance_id).state == "completed"
