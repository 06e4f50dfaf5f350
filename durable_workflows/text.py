"""Text that every database keeps as it is given.

PostgreSQL refuses a NUL character in text and in jsonb, and every driver refuses a lone
surrogate (half of a UTF-16 pair, as `os.fsdecode` makes of bytes that are not UTF-8) when
it encodes the text to UTF-8. A write refused for that is no fault of the database: taken
for one, the run would be recovered, run the same code again, and be refused again until
its recovery attempts ran out, its real outcome lost.

So what describes a failure (an error's message and traceback, a cancel reason) is stored
escaped: it must be kept whatever it says, and it is read by people. A value given to be kept
as it is (an input, a step result, an event payload: serialization.py; `wf.set_meta`) is
refused where it is given instead.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"


def storable(text: str) -> str:
    """`text` as it is, or with each NUL written `\\x00` and each lone surrogate as its
    `\\udXXX` escape when it has any: readable, and accepted by every database."""
    if NUL in text:
        text = text.replace(NUL, "\\x00")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def refused(text: str) -> bool:
    """Whether a database would refuse `text` (it holds a NUL or a lone surrogate)."""
    return storable(text) != text


def refused_in(value: Any) -> str | None:
    """The first text in a JSON value (its keys included) that a database would refuse,
    or None when there is none."""
    if isinstance(value, str):
        return value if refused(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = refused_in(key) or refused_in(item)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            found = refused_in(item)
            if found is not None:
                return found
    return None
