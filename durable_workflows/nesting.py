"""How deeply nested a JSON document the surfaces accept (the API's bodies, the command's
`--input` and `--payload`).

Whether a very deep document parses depends on the Python: before 3.13 the `json` module
raised `RecursionError` past about a thousand levels, 3.13 parses far deeper, and storing
such a value may still exhaust the recursion limit later. One explicit limit gives the same
answer everywhere, at the door, before anything is stored.
"""

from __future__ import annotations

from typing import Any

#: Deeper than any input a workflow takes on purpose, far below what recursion can handle.
MAX_NESTING = 256


class TooDeep(ValueError):
    pass


def check_nesting(value: Any, limit: int = MAX_NESTING) -> Any:
    """Return `value` when its lists and dicts nest at most `limit` deep; raise `TooDeep`
    otherwise. Walks the value without recursion, so any depth can be measured."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise TooDeep(f"nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)
    return value
