"""Names a workflow passes to a primitive (an event's, a patch's): text the database keeps."""

from __future__ import annotations

from typing import Any

from ..text import refused


def checked(value: Any, what: str) -> str:
    """`value` if it is non-empty text of at most 255 characters that the database keeps
    (no NUL, no lone surrogate); otherwise a `ValueError` that says `what` it was meant to be."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be non-empty text, got {value!r}")
    if len(value) > 255 or refused(value):
        raise ValueError(f"{what} must be at most 255 characters, without NUL or lone surrogates, got {value!r}")
    return value
