"""Encryption at rest: what turns a stored value (an input, a result, an event's payload,
meta) into text nobody can read without a key, and back.

A sealed value says which key sealed it: `dwenc:1:<key id>:<token>`, the key id being the
first 8 hex digits of the key's SHA-256. So the keys rotate (CODEC_KEYS, newest first: the
first seals, any of them opens), a value sealed under a key that is no longer listed fails
with an error naming that key rather than decoding to garbage, and a value stored before a
codec was set (plain JSON never starts with the prefix) still reads as it is.

With no CODEC set nothing here runs: serialization.py asks `settings.CODEC` once per value
and goes on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.utils.module_loading import import_string

from .conf import settings
from .exceptions import CodecError

PREFIX = "dwenc:"
#: The version of the sealed format: text, and bytes given as bytes.
_TEXT, _BYTES = "1", "1b"
#: The key of the one-entry object that holds sealed meta in its JSON column.
META_KEY = "dwenc"
#: What a user without the `view_payloads` permission sees in place of a value.
PLACEHOLDER = "(encrypted)"
#: The permission that shows values in plain in the admin and the API while a codec is set.
VIEW_PERMISSION = "durable_workflows.view_payloads"
EXTRA_HINT = "pip install 'django-durable-workflows[encryption]'"


def key_id(key: str | bytes) -> str:
    """The short name of `key` written into every value it seals."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()[:8]


def sealed_key(stored: Any) -> str | None:
    """The key id a stored text was sealed with, or None for a plain value."""
    if not isinstance(stored, str) or not stored.startswith(PREFIX):
        return None
    parts = stored.split(":", 3)
    return parts[2] if len(parts) == 4 else None


class Codec:
    """Seals and opens stored text. A codec of one's own subclasses this: `seal` and `open`
    work on bytes under one key id; the framing (prefix, key id, plain pass-through) is here."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)

    #: The key id new values are sealed with.
    current_key: str = ""

    def seal(self, data: bytes) -> tuple[str, str]:  # pragma: no cover - the interface
        """(key id, token) of `data` under the newest key."""
        raise NotImplementedError

    def open(self, key: str, token: str) -> bytes:  # pragma: no cover - the interface
        """The data of `token`, sealed under key id `key`; CodecError if it cannot be."""
        raise NotImplementedError

    def encode(self, data: bytes | str) -> str:
        """The stored text of `data`."""
        version = _BYTES if isinstance(data, bytes) else _TEXT
        key, token = self.seal(data if isinstance(data, bytes) else data.encode("utf-8"))
        return f"{PREFIX}{version}:{key}:{token}"

    def decode(self, stored: str) -> str | bytes:
        """What `encode` was given (text or bytes); text without the prefix as it is."""
        if not stored.startswith(PREFIX):
            return stored
        parts = stored.split(":", 3)
        if len(parts) != 4 or parts[1] not in (_TEXT, _BYTES):
            raise CodecError(f"stored value {stored[:40]!r} is not in the format {PREFIX}1:<key id>:<token>")
        data = self.open(parts[2], parts[3])
        return data if parts[1] == _BYTES else data.decode("utf-8")

    def decode_text(self, stored: str) -> str:
        value = self.decode(stored)
        return value.decode("utf-8") if isinstance(value, bytes) else value

    def is_current(self, stored: str) -> bool:
        """Whether `stored` is sealed under the newest key (rotation leaves it alone)."""
        return sealed_key(stored) == self.current_key


class FernetCodec(Codec):
    """Fernet (AES-128-CBC with HMAC-SHA256) from the `cryptography` package, one key per
    entry of CODEC_KEYS."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__(keys)
        try:
            from cryptography.fernet import Fernet, InvalidToken
        except ImportError:
            raise ImproperlyConfigured(
                f"DURABLE_WORKFLOWS CODEC {type(self).__name__} needs the cryptography package: {EXTRA_HINT}"
            ) from None
        self._invalid = InvalidToken
        self._fernets: dict[str, Any] = {}
        for index, key in enumerate(self.keys):
            try:
                fernet = Fernet(key)
            except (TypeError, ValueError) as exc:
                raise ImproperlyConfigured(
                    f"DURABLE_WORKFLOWS CODEC_KEYS[{index}] is not a Fernet key ({exc}); "
                    "make one with cryptography.fernet.Fernet.generate_key()"
                ) from None
            self._fernets.setdefault(key_id(key), fernet)
        self.current_key = key_id(self.keys[0])

    def seal(self, data: bytes) -> tuple[str, str]:
        return self.current_key, self._fernets[self.current_key].encrypt(data).decode("ascii")

    def open(self, key: str, token: str) -> bytes:
        fernet = self._fernets.get(key)
        if fernet is None:
            raise CodecError(f"stored value was encrypted with key {key}, which CODEC_KEYS does not hold")
        try:
            data: bytes = fernet.decrypt(token.encode("ascii"))
        except (self._invalid, UnicodeEncodeError):
            raise CodecError(f"stored value under key {key} does not decrypt: it was altered") from None
        return data


#: The CODEC and CODEC_KEYS settings last seen, and the codec they gave.
_last: tuple[Any, Any, Codec | None] = (object(), object(), None)


def current() -> Codec | None:
    """The codec of the settings, built once per value of them; None without CODEC."""
    global _last
    name, keys = settings.CODEC, settings.CODEC_KEYS
    last = _last
    if name is last[0] and keys is last[1]:
        return last[2]
    codec = build(name, keys) if name is not None else None
    _last = (name, keys, codec)
    return codec


def build(name: Any, keys: Any) -> Codec:
    """The codec `name` (an import string or a class) with `keys`; ImproperlyConfigured
    naming what is wrong."""
    if isinstance(keys, str) or not isinstance(keys, (list, tuple)) or not keys:
        raise ImproperlyConfigured(
            "DURABLE_WORKFLOWS CODEC_KEYS must be a non-empty list of keys, newest first, got "
            f"{type(keys).__name__}"
        )
    for index, key in enumerate(keys):
        if not isinstance(key, str) or not key:
            raise ImproperlyConfigured(f"DURABLE_WORKFLOWS CODEC_KEYS[{index}] must be text, got {key!r}")
    if isinstance(name, str):
        try:
            name = import_string(name)
        except ImportError as exc:
            raise ImproperlyConfigured(f"DURABLE_WORKFLOWS CODEC {name!r} cannot be imported: {exc}") from None
    codec = name(keys)
    if not isinstance(codec, Codec):
        raise ImproperlyConfigured(f"DURABLE_WORKFLOWS CODEC {name!r} is not a durable_workflows.codecs.Codec")
    return codec


def required() -> Codec:
    """The codec, for what makes no sense without one (rotating keys)."""
    codec = current()
    if codec is None:
        raise ImproperlyConfigured("DURABLE_WORKFLOWS CODEC is not set: there are no keys to rotate to")
    return codec


# -- meta ------------------------------------------------------------------------------------
def seal_meta(value: Any) -> Any:
    """Meta as its JSON column stores it: `{"dwenc": "<sealed JSON>"}` with a codec set."""
    codec = current()
    if codec is None or not value or is_sealed_meta(value):
        return value
    return {META_KEY: codec.encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False))}


def open_meta(value: Any) -> Any:
    """Meta as the workflow set it, from what its column holds (sealed or not). Every reader
    of the column goes through here (the model field does it on load)."""
    if not is_sealed_meta(value):
        return value
    codec = current()
    if codec is None:
        raise CodecError(f"stored meta was encrypted with key {sealed_key(value[META_KEY])}, "
                         "and DURABLE_WORKFLOWS sets no CODEC")
    return json.loads(codec.decode_text(value[META_KEY]))


def is_sealed_meta(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and sealed_key(value.get(META_KEY)) is not None


# -- who sees plain values -------------------------------------------------------------------
def shown_to(user: Any) -> bool:
    """Whether `user` sees stored values in plain: anyone without a codec (as the page or
    endpoint lets them in), otherwise only holders of the `view_payloads` permission."""
    if settings.CODEC is None:
        return True
    return user is not None and bool(user.has_perm(VIEW_PERMISSION))


class SealedJSONField(models.JSONField):
    """A JSON column (meta) whose value is sealed as it is written and opened as it is
    read, while a codec is set. Stored as a JSONField is: its migrations name that."""

    def get_prep_value(self, value: Any) -> Any:
        if settings.CODEC is not None:
            value = seal_meta(value)
        return super().get_prep_value(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        value = super().from_db_value(value, expression, connection)
        if type(value) is dict and META_KEY in value:  # a claim reads it: no call for plain meta
            return open_meta(value)
        return value

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs
