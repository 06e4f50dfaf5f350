"""Which instances a list or a bulk action is about: the filters `client.list`, `client.bulk`,
the API's instance list and bulk endpoint, the admin's list and the command all take.

One definition, so that `?state=failed&created_before=...` in the API, `--state failed
--created-before ...` in the command and `client.bulk("cancel", state="failed",
created_before=...)` select the same instances. Python values (`check`) and text (`from_text`,
for query strings and command lines) are both refused here with a `ValueError` that names the
filter, before any query runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .registry import get_definition
from .states import State, as_state

#: Filter name -> the lookup it becomes (`state` becomes `state__in`, for one state or several).
LOOKUPS: dict[str, str] = {
    "state": "state__in",
    "workflow": "workflow",
    "parent": "parent_id",
    "forked_from": "forked_from",
    "id_prefix": "pk__startswith",
    "created_after": "created_at__gt",
    "created_before": "created_at__lt",
    "finished_after": "finished_at__gt",
    "finished_before": "finished_at__lt",
}
NAMES = tuple(LOOKUPS)
TEXT = ("workflow", "parent", "forked_from", "id_prefix")
MOMENTS = ("created_after", "created_before", "finished_after", "finished_before")


class FilterError(ValueError):
    """A filter the caller got wrong; `name` says which (the API's 400 and the command's
    error name it)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name

    @property
    def named(self) -> str:
        """The message, starting with the filter's name."""
        text = str(self)
        return text if text.startswith(self.name) else f"{self.name}: {text}"


def check(filters: Mapping[str, Any]) -> dict[str, Any]:
    """The filters given as Python values, checked and normalised: None means "not given"
    and is dropped; `state` becomes a tuple of `State`; a workflow function becomes its name.

    An unknown name, an unknown state, a naive datetime or empty text is a `ValueError`
    naming the filter; a value of the wrong type a `TypeError`."""
    unknown = sorted(name for name in filters if name not in LOOKUPS)
    if unknown:
        raise FilterError(unknown[0], f"unknown filter {', '.join(map(repr, unknown))}; "
                                      f"expected one of: {', '.join(NAMES)}")
    checked: dict[str, Any] = {}
    for name, value in filters.items():
        if value is not None:
            try:
                checked[name] = _CHECKS[name](name, value)
            except FilterError:
                raise
            except ValueError as exc:  # as_state's, an unknown state
                raise FilterError(name, str(exc)) from None
    return checked


def condition(filters: Mapping[str, Any]) -> Q:
    """The filters (checked with `check`) as one condition on WorkflowInstance."""
    return Q(**{LOOKUPS[name]: value for name, value in filters.items()})


def filtered(queryset: QuerySet, filters: Mapping[str, Any]) -> QuerySet:
    """`queryset` narrowed by the filters, checked here."""
    checked = check(filters)
    return queryset.filter(condition(checked)) if checked else queryset


def from_text(values: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    """Filters given as text, a list of values for each name (a query string, a command
    line): `state` may repeat, and is also split at commas; the others take one value;
    times are ISO 8601 with a UTC offset ("2026-01-31T12:00:00+00:00", "...Z"). Checked as
    `check` does, so the result can be passed to `condition`."""
    parsed: dict[str, Any] = {}
    for name, given in values.items():
        texts = list(given)
        if name not in LOOKUPS or not texts:
            parsed[name] = texts or None
            continue
        if name == "state":
            parsed[name] = [part for text in texts for part in text.split(",")]
            continue
        if len(texts) > 1:
            raise FilterError(name, f"{name} takes one value, got {len(texts)}")
        parsed[name] = _moment_text(name, texts[0]) if name in MOMENTS else texts[0]
    return check(parsed)


def from_data(values: Mapping[str, Any]) -> dict[str, Any]:
    """Filters given as JSON (the API's bulk body): text for each, or a list of texts for
    `state`; read as `from_text` reads them."""
    texts: dict[str, list[str]] = {}
    for name, value in values.items():
        given = value if isinstance(value, list) and name == "state" else [value]
        if name in LOOKUPS and not all(isinstance(each, str) for each in given):
            kind = "text, or a list of texts" if name == "state" else "text"
            raise FilterError(str(name), f"{name} must be {kind}, got {value!r}")
        texts[str(name)] = given
    return from_text(texts)


def _states(name: str, value: Any) -> tuple[State, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a state or a list of states, got {value!r}")
    states = tuple(dict.fromkeys(as_state(each) for each in values))
    if not states:
        raise FilterError(name, f"{name} must name at least one state")
    return states


def _workflow(name: str, value: Any) -> str:
    if callable(value) and not isinstance(value, str):
        return get_definition(value).name
    if not isinstance(value, str):
        raise TypeError(f"workflow must be a workflow's name or function, got {value!r}")
    return _text(name, value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be text, got {value!r}")
    if not value:
        raise FilterError(name, f"{name} must not be empty")
    return _no_nul(name, value)


def _no_nul(name: str, value: Any) -> Any:
    # No stored text has one, and PostgreSQL refuses it as a query parameter.
    if isinstance(value, str) and "\x00" in value:
        raise FilterError(name, f"{name} must not contain a null character")
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise FilterError(name, f"{name} must be valid text (it has a lone surrogate)") from None
    return value


def _moment(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if timezone.is_naive(value):
        raise FilterError(name, f"{name} must be an aware datetime (with a time zone), got the naive {value.isoformat()}")
    try:
        # In UTC: PostgreSQL refuses offsets past 15:59, which Python's datetimes allow.
        return value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise FilterError(name, f"{name} is out of range: {value.isoformat()}") from None


def _moment_text(name: str, text: str) -> datetime:
    try:
        value = parse_datetime(text.strip())
    except ValueError:
        value = None
    if value is None:
        raise FilterError(name, f"{name} must be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z, got {text!r}")
    return _moment(name, value)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "state": _states, "workflow": _workflow, "parent": _text, "forked_from": _text, "id_prefix": _text,
    **{name: _moment for name in MOMENTS},
}
