"""The instance filters as command-line options (`--state S [--state S2] --created-before ...`),
shared by the `list` and `bulk` sub-commands; the values are checked by `filters.from_text`."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ..filters import MOMENTS, NAMES, FilterError, from_text

HELP = {
    "state": "Only this state (pending, queued, running, ...); repeat it, or separate with commas, for several.",
    "workflow": "Only this workflow.",
    "parent": "Only the children of this instance.",
    "forked_from": "Only the forks of this instance.",
    "id_prefix": "Only ids that start with this.",
}


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_filter_arguments(parser: ArgumentParser) -> None:
    for name in NAMES:
        if name in MOMENTS:
            edge, column = name.split("_")[::-1]
            text = f"Only instances {column} {edge} this time (ISO 8601 with an offset, e.g. 2026-01-31T12:00Z)."
        else:
            text = HELP[name]
        parser.add_argument(option(name), dest=name, default=None, metavar=name.split("_")[-1].upper(),
                            action="append" if name == "state" else "store", help=text)


def filters_of(options: dict[str, Any]) -> dict[str, Any]:
    """The filters the options give, checked; a bad one is a `CommandError` naming its option."""
    given: dict[str, list[str]] = {}
    for name in NAMES:
        value = options.get(name)
        if value is not None:
            given[name] = [value] if isinstance(value, str) else [str(each) for each in value]
    try:
        return from_text(given)
    except FilterError as exc:
        raise CommandError(f"{option(exc.name)}: {exc}") from None
