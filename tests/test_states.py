"""The state machine: every pair of states, through the one transition function."""

import itertools

import pytest

from durable_workflows import InvalidTransition
from durable_workflows.models import WorkflowInstance
from durable_workflows.states import TRANSITIONS, State, transition

pytestmark = pytest.mark.django_db

ALLOWED = {
    (State.PENDING, State.RUNNING), (State.PENDING, State.QUEUED),
    (State.QUEUED, State.RUNNING), (State.QUEUED, State.CANCELLED),
    (State.RUNNING, State.COMPLETED), (State.RUNNING, State.PAUSED),
    (State.RUNNING, State.FAILED), (State.RUNNING, State.CANCELLED),
    (State.PAUSED, State.RUNNING), (State.PAUSED, State.CANCELLED),
}


def test_table_is_exactly_the_design():
    table = {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts}
    assert table == ALLOWED


@pytest.mark.parametrize("source, target", list(itertools.product(State, State)))
def test_every_pair(source, target):
    instance = WorkflowInstance.objects.create(id=f"{source}-{target}", workflow="x", state=source)
    if (source, target) in ALLOWED:
        transition(instance, target)
        assert WorkflowInstance.objects.get(pk=instance.pk).state == target
    else:
        with pytest.raises(InvalidTransition) as info:
            transition(instance, target)
        assert source.label in str(info.value) and target.label in str(info.value)
        assert WorkflowInstance.objects.get(pk=instance.pk).state == source


def test_compare_and_set_refuses_a_stale_view():
    instance = WorkflowInstance.objects.create(id="cas", workflow="x", state=State.QUEUED)
    stale = WorkflowInstance.objects.get(pk="cas")
    transition(instance, State.RUNNING)
    with pytest.raises(InvalidTransition, match="Running now"):
        transition(stale, State.CANCELLED)
    assert WorkflowInstance.objects.get(pk="cas").state == State.RUNNING


def test_states_accept_any_case():
    instance = WorkflowInstance.objects.create(id="case", workflow="x", state=State.PENDING)
    transition(instance, "Queued")
    assert instance.state == "queued" and instance.state == "Queued"
    with pytest.raises(ValueError, match="bogus"):
        transition(instance, "bogus")


def test_states_hash_as_their_value_so_sets_and_dicts_of_states_and_values_agree():
    assert "completed" in {State.COMPLETED} and State.COMPLETED in {"completed"}
    assert {State.PAUSED: 1}["paused"] == 1 and {"paused": 1}[State.PAUSED] == 1
    assert len({State.FAILED, "failed"}) == 1
    assert all(hash(state) == hash(state.value) for state in State)
