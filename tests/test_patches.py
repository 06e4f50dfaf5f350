"""`wf.patched` and `wf.deprecate_patch` (DESIGN §10): a deploy that changes a workflow's code
under instances in flight."""

from __future__ import annotations

import pytest

from durable_workflows import client
from durable_workflows.engine import fire_alarm_now
from tests.testapp.fault_workflows import RAN
from tests.testapp.patch_workflows import VERSION

pytestmark = pytest.mark.django_db(transaction=True)


def names(handle) -> list[tuple[str, int, str]]:
    return [(s.branch, s.position, s.name) for s in handle.steps]


def deploy(version) -> None:
    VERSION["v"] = version


@pytest.mark.parametrize("name", ["patches.order", "patches.async_order"])
def test_an_instance_paused_under_v1_replays_under_the_patched_v2(name):
    tag = "pa" if "async" in name else "p"
    old = client.start(name).refresh()
    assert old.state == "paused"
    deploy(2)
    fire_alarm_now(old.instance_id)
    done = old.refresh()
    assert done.state == "completed", done.error
    assert RAN[f"{tag}-X"] == 0  # it had passed that point under v1
    assert names(done) == [("", 0, "A"), ("", 1, "sleep"), ("", 2, "B")]
    new = client.start(name).refresh()
    assert names(new) == [("", 0, "A"), ("", 1, "add-x"), ("", 2, "X"), ("", 3, "sleep")]
    assert new.steps[1].kind == "patch"
    fire_alarm_now(new.instance_id)
    assert new.refresh().state == "completed" and RAN[f"{tag}-X"] == 1


def test_a_careless_v2_breaks_the_instances_in_flight():
    old = client.start("patches.order").refresh()
    deploy("careless")
    fire_alarm_now(old.instance_id)
    failed = old.refresh()
    assert failed.state == "failed" and failed.error["type"] == "NonDeterminismError"
    assert "position 1" in failed.error["message"] and "'X'" in failed.error["message"]


def test_deprecate_patch_keeps_patched_histories_replaying():
    deploy(2)
    patched = client.start("patches.order").refresh()
    assert patched.state == "paused" and RAN["p-X"] == 1
    deploy(3)
    fire_alarm_now(patched.instance_id)
    done = patched.refresh()
    assert done.state == "completed", done.error
    assert RAN["p-X"] == 1
    new = client.start("patches.order").refresh()
    assert names(new) == [("", 0, "A"), ("", 1, "X"), ("", 2, "sleep")]


def test_patched_inside_a_parallel_branch():
    old = client.start("patches.branches").refresh()
    assert old.state == "paused"
    deploy(2)
    fire_alarm_now(old.instance_id)
    assert old.refresh().result() == ["pb-other", "pb-last"] and RAN["pb-X"] == 0
    new = client.start("patches.branches").refresh()
    assert ("0:1", 1, "add-x") in names(new) and RAN["pb-X"] == 1


@pytest.mark.parametrize("how, message", [
    ("empty", "a patch id must be non-empty text, got ''"),
    ("type", "a patch id must be non-empty text, got 7"),
    ("twice", "patch 'twice' was already asked for in this run"),
])
def test_bad_patch_ids_are_refused(how, message):
    handle = client.start("patches.bad", how).refresh()
    assert handle.result().startswith(message)
