"""Key rotation: every stored value sealed again under the newest key of CODEC_KEYS.

Once it has run, every older key can leave the list. It reads one chunk of rows at a time
(bounded memory) and rewrites each chunk in a transaction of its own, so it can run while
workers do: a row is rewritten only where its value is still the one read (a compare-and-set
UPDATE), and a value a worker writes meanwhile is sealed under the newest key already. Values
stored before the codec was set are sealed by it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.models.functions import Cast

from . import codecs, database
from .models import InboxMessage, StepRecord, WorkflowInstance

#: The columns that hold user values: (model, field name), `meta` being JSON.
COLUMNS: tuple[tuple[type[models.Model], str], ...] = (
    (WorkflowInstance, "input"),
    (WorkflowInstance, "result"),
    (WorkflowInstance, "meta"),
    (StepRecord, "result"),
    (InboxMessage, "payload"),
)


@dataclass
class Rotation:
    """How many values were (or, in a dry run, would be) rewritten, by column."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def rotate_keys(*, chunk_size: int = 500, dry_run: bool = False) -> Rotation:
    """Seal every stored value not under the newest key with it. ImproperlyConfigured
    without a codec; CodecError (naming the key) for a value no listed key opens, before
    anything of its chunk is written."""
    if chunk_size < 1:
        raise ValueError(f"the chunk size must be 1 or more, got {chunk_size}")
    codec = codecs.required()
    rotation = Rotation()
    for model, name in COLUMNS:
        label = f"{model._meta.model_name}.{name}"
        rotation.counts[label] = 0
        for chunk in _chunks(model, name, chunk_size):
            changes = [(pk, old, _resealed(codec, name, old)) for pk, old in chunk if _stale(codec, name, old)]
            if not dry_run and changes:
                rotation.counts[label] += _write(model, name, changes)
            else:
                rotation.counts[label] += len(changes)
    return rotation


def _chunks(model: type[models.Model], name: str, size: int) -> Iterator[list[tuple[Any, str]]]:
    """(pk, the column's text as stored) of every row with a value, `size` rows at a time."""
    manager = model._default_manager
    last = None
    while True:
        rows = manager.exclude(**{f"{name}__isnull": True}).annotate(raw=Cast(name, models.TextField()))
        if last is not None:
            rows = rows.filter(pk__gt=last)
        chunk = list(rows.order_by("pk").values_list("pk", "raw")[:size])
        if not chunk:
            return
        last = chunk[-1][0]
        yield [(pk, raw) for pk, raw in chunk if raw]


def _stale(codec: codecs.Codec, name: str, raw: str) -> bool:
    if name != "meta":
        return not codec.is_current(raw)
    value = json.loads(raw)
    if codecs.is_sealed_meta(value):
        return not codec.is_current(value[codecs.META_KEY])
    return bool(value)


def _resealed(codec: codecs.Codec, name: str, raw: str) -> Any:
    if name != "meta":
        return codec.encode(codec.decode_text(raw))
    return {codecs.META_KEY: codec.encode(json.dumps(codecs.open_meta(json.loads(raw)), separators=(",", ":"),
                                                     ensure_ascii=False))}


def _write(model: type[models.Model], name: str, changes: list[tuple[Any, str, Any]]) -> int:
    """Rewrite one chunk in one transaction; a row whose value changed since it was read
    (a worker wrote it, under the newest key) is left as it is."""
    written = 0
    manager = model._default_manager
    with database.atomic():
        for pk, old, new in changes:
            rows = manager.alias(raw=Cast(name, models.TextField())).filter(pk=pk, raw=old)
            written += rows.update(**{name: new})
    return written
