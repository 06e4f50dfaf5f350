"""How inputs, step results and outputs are stored: JSON text with a few tagged types.

Plain JSON would turn a datetime into a string on replay, so a workflow would see a different
value on its first run than on every later one. Tagging datetime, date, time, timedelta,
Decimal, UUID, tuple and set keeps replays identical to the first run.

A tag is a JSON object `{"__dw__": kind, "v": ...}`. A user's own dict that has the tag's key
is stored as a list of its pairs under the tag "dict", never as an object: the decoder
restores objects innermost first, so a user dict kept as an object would be decoded as the
tag it looks like (`{"__dw__": "bytes", "v": "aGk="}` coming back as `b'hi'`) before the
wrapper around it could say it was data.

Text must be something every database stores: a NUL character or a lone surrogate (which no
UTF-8 can hold) is refused here, where the value is given, rather than by the database at the
next write, where it would look like a database fault.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Protocol

from django.utils.dateparse import parse_date, parse_datetime, parse_time

from . import codecs
from .conf import settings
from .exceptions import CodecError, SerializationError
from .text import NUL, refused

TAG = "__dw__"


class Serializer(Protocol):
    def dumps(self, value: Any) -> str: ...

    def loads(self, text: str) -> Any: ...


def _check_text(text: str) -> str:
    if refused(text):
        what = "a NUL character" if NUL in text else "a lone surrogate (not valid Unicode)"
        raise SerializationError(f"text with {what} cannot be stored: {text[:40]!r}")
    return text


def _encode(value: Any) -> Any:
    """Return a JSON-ready copy of `value`, tagging the types JSON would change."""
    if isinstance(value, str):
        return _check_text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise SerializationError(f"{value!r} is not a finite number")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"dict keys must be strings to be stored, got {type(key).__name__} {key!r}"
                )
            out[_check_text(key)] = _encode(item)
        if TAG in out:
            return {TAG: "dict", "v": [[key, item] for key, item in out.items()]}
        return out
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [_encode(item) for item in value]}
    if isinstance(value, (set, frozenset)):
        return {TAG: "set", "v": [_encode(item) for item in value]}
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    raise SerializationError(f"values of type {type(value).__name__} cannot be stored as JSON")


def _user_dict(v: Any) -> dict[str, Any]:
    # Earlier releases stored the dict itself here (already decoded by then).
    return v if isinstance(v, dict) else {key: item for key, item in v}


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "dict": _user_dict,
    "tuple": tuple,
    "set": set,
    "datetime": parse_datetime,
    "date": parse_date,
    "time": parse_time,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "bytes": lambda v: base64.b64decode(v),
}


def _hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is not None and len(obj) == 2 and "v" in obj:
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            return decoder(obj["v"])
    return obj


def compiled(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """`encoder.encode` for values that hold no reference to themselves (which `_encode`
    and the engine's own data never do), from one C encoder made once: `encode` makes one
    at every call. The same text, and the same errors; `encode` itself where there is no C
    encoder, or the text is indented."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:
        return encoder.encode
    quote = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    chunks = make(None, encoder.default, quote, None, encoder.key_separator, encoder.item_separator,
                  encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)
    return lambda value: "".join(chunks(value, 0))


class JSONSerializer:
    """The default serializer: compact JSON, tagged types restored on load."""

    _encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    # A step's result is stored at every step: its text from one encoder made once.
    _dump = staticmethod(compiled(_encoder))

    def dumps(self, value: Any) -> str:
        return self._dump(_encode(value))

    _decoder = json.JSONDecoder(object_hook=_hook)

    def loads(self, text: str) -> Any:
        return self._decoder.decode(text)


_instances: dict[type, Serializer] = {}
#: The SERIALIZER setting last seen, and the serializer it gave.
_last: tuple[Any, Any] = (object(), None)


def get_serializer() -> Serializer:
    global _last
    serializer = settings.SERIALIZER
    last = _last
    if serializer is last[0]:  # twice per step: answered without the lookups below
        return last[1]
    resolved = _resolve(serializer)
    _last = (serializer, resolved)
    return resolved


def _resolve(serializer: Any) -> Serializer:
    if isinstance(serializer, type):
        instance = _instances.get(serializer)
        if instance is None:
            instance = _instances[serializer] = serializer()
        return instance
    return serializer


def dumps(value: Any, what: str, sealed: bool = True) -> str:
    """Serialize `value`, naming `what` (the input, a step) in the error if it cannot be stored.
    With a CODEC set the text is encrypted, unless `sealed` is False (what is no user value)."""
    try:
        text = get_serializer().dumps(value)
    except SerializationError as exc:
        raise SerializationError(f"{what} cannot be stored: {exc}") from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise SerializationError(f"{what} cannot be stored: {exc}") from None
    if settings.CODEC is not None and sealed:  # one attribute read without a codec
        return codecs.current().encode(text)  # type: ignore[union-attr]  # CODEC set: a codec
    return text


def loads(text: str | None) -> Any:
    if text is None or text == "":
        return None
    if settings.CODEC is not None:
        text = codecs.current().decode_text(text)  # type: ignore[union-attr]  # CODEC set: a codec
    try:
        return get_serializer().loads(text)
    except Exception:
        key = codecs.sealed_key(text)
        if key is not None:  # sealed, and no codec set to open it
            raise CodecError(f"stored value was encrypted with key {key}, and DURABLE_WORKFLOWS "
                             "sets no CODEC") from None
        raise


def resealed(text: str | None) -> str | None:
    """Stored `text` copied into another row, under the newest key: a copy of a value sealed
    under an older key would otherwise outlive a key rotation that had already passed the row."""
    codec = codecs.current()
    if codec is None or not text or codec.is_current(text):
        return text
    return codec.encode(codec.decode_text(text))


# What the default serializer gives back exactly as it was given (the type, and the value:
# NaN and the infinities are refused when stored).
_AS_STORED = frozenset({type(None), bool, int, float, str})


def stored_value(value: Any, text: str) -> Any:
    """`loads(text)`, where `text` is `dumps(value)`: what every replay will see. A plain
    value the default serializer stores (None, a bool, a number, text) is that value already,
    so it is not decoded again."""
    if type(value) in _AS_STORED and type(get_serializer()) is JSONSerializer:
        return value
    return loads(text)


def encode_input(args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """A workflow's arguments as stored on its instance."""
    return dumps({"args": list(args), "kwargs": kwargs}, "the workflow input")


def decode_input(text: str | None) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments stored by `encode_input`."""
    data = loads(text) or {}
    return list(data.get("args", [])), dict(data.get("kwargs", {}))
