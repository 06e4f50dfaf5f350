"""Coloured state badges: one colour per instance state and per step state.

A state added to `State` or `StepState` without a colour here fails a guard test, so the
admin never shows a state it cannot draw.
"""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import StepState
from ..states import State, as_state

# Background colours; the text is white, readable on each in light and dark themes.
STATE_BADGES: dict[State, str] = {
    State.PENDING: "#64748b",
    State.QUEUED: "#0891b2",
    State.RUNNING: "#2563eb",
    State.PAUSED: "#d97706",
    State.COMPLETED: "#16a34a",
    State.FAILED: "#dc2626",
    State.CANCELLED: "#52525b",
}

STEP_STATE_BADGES: dict[StepState, str] = {
    StepState.RUNNING: "#2563eb",
    StepState.WAITING: "#d97706",
    StepState.SLEEPING: "#a16207",
    StepState.AWAITING: "#7c3aed",
    StepState.COMPLETED: "#16a34a",
    StepState.FAILED: "#dc2626",
}


def _badge(css_name: str, label: str, colour: str) -> SafeString:
    return format_html(
        '<span class="dw-badge dw-{}" style="background-color:{}">{}</span>',
        css_name, colour, label,
    )


def state_badge(state: State | str) -> SafeString:
    value = as_state(state)
    return _badge(f"state-{value.value}", value.label, STATE_BADGES[value])


def step_state_badge(state: StepState | str) -> SafeString:
    try:
        value = StepState(state)
    except ValueError:  # a state written by a newer version: show it, uncoloured
        return _badge("step-unknown", str(state), "#6b7280")
    return _badge(f"step-{value.value}", value.label, STEP_STATE_BADGES[value])


HELD_BADGE = "#9333ea"


def held_badge() -> SafeString:
    """Beside the state of an instance an operator holds (client.pause)."""
    return _badge("held", "held", HELD_BADGE)
