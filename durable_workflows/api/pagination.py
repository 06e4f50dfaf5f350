"""Keyset pagination for instance lists:
`{"count", "count_is_estimate", "next", "previous", "results"}`.

A page is read from where the one before it ended, by (created_at, id), newest first: an
index range of one page's rows, as quick on the millionth instance as on the first, where
an OFFSET reads and throws away every row before the page. `next` and `previous` are
opaque links carrying that position (`?cursor=`). `?page=N` still reads the first pages
(up to OFFSET_UP_TO instances in), whose OFFSET is short; deeper, it is refused with a
pointer to `next`. `count` is exact up to counting.EXACT_UP_TO and estimated above.
"""

from __future__ import annotations

import binascii
import json
from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from .. import counting
from ..engine.instances import findable
from ..models import WorkflowInstance

#: Newest first; the id orders instances created in the same microsecond.
ORDERING = ("-created_at", "-pk")
#: The most instances a `?page=N` may skip: an OFFSET beyond reads too many rows to skip them.
OFFSET_UP_TO = 10_000
PAGE_SIZE = 50
INVALID_CURSOR = ("Invalid cursor: not one this list gave out in a `next` or `previous` link "
                  "(start again from the first page, without `cursor`).")


def cursor_after(instance: WorkflowInstance) -> str:
    """The `cursor` of the page that follows a page ending with `instance`."""
    return _encode(instance, reverse=False)


class InstancePagination(CursorPagination):
    """Fifty instances a page by default; `?page_size=` up to 500 for scripts that walk them."""

    page_size = PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = ORDERING
    invalid_cursor_message = INVALID_CURSOR

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        self.request = request
        self.size: int = self.get_page_size(request) or PAGE_SIZE
        self.base_url = self.link_base = remove_query_param(request.build_absolute_uri(), "page")
        token = request.query_params.get(self.cursor_query_param)
        if token is not None:
            created_at, pk, reverse = _decode(token)
            rows = self._from_position(queryset, created_at, pk, reverse)
        else:
            rows = self._numbered_page(queryset, _page_number(request))
        self.rows = rows
        self.counted = counting.count(queryset)
        # The browsable API's previous and next buttons, when there is somewhere to go.
        self.display_page_controls = bool(self.has_previous or self.has_next)
        return rows

    def _from_position(self, queryset: QuerySet[Any], created_at: datetime, pk: str, reverse: bool) -> list[Any]:
        """The page after (or, `reverse`, before) the row at that position, in list order."""
        if reverse:
            newer = Q(created_at__gte=created_at) & (Q(created_at__gt=created_at) | Q(pk__gt=pk))
            found = list(queryset.filter(newer).order_by("created_at", "pk")[: self.size + 1])
            self.has_previous, self.has_next = len(found) > self.size, True
            return found[: self.size][::-1]
        older = Q(created_at__lte=created_at) & (Q(created_at__lt=created_at) | Q(pk__lt=pk))
        found = list(queryset.filter(older).order_by(*ORDERING)[: self.size + 1])
        self.has_previous, self.has_next = True, len(found) > self.size
        return found[: self.size]

    def _numbered_page(self, queryset: QuerySet[Any], number: int) -> list[Any]:
        skipped = (number - 1) * self.size
        if skipped > OFFSET_UP_TO:
            raise ValidationError({"page": [
                f"Page {number} starts {skipped:,} instances in; `page` reads at most the first "
                f"{OFFSET_UP_TO:,}. Follow the `next` links (a `cursor`) to go further."
            ]})
        found = list(queryset.order_by(*ORDERING)[skipped: skipped + self.size + 1])
        if number > 1 and not found:
            raise NotFound(f"Invalid page: page {number} is past the last page.")
        self.has_previous, self.has_next = number > 1, len(found) > self.size
        return found[: self.size]

    def get_next_link(self) -> str | None:
        if not (self.has_next and self.rows):
            return None
        return replace_query_param(self.link_base, self.cursor_query_param, _encode(self.rows[-1], reverse=False))

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        if not self.rows:  # past the end of the list: back to its start
            return remove_query_param(self.link_base, self.cursor_query_param)
        return replace_query_param(self.link_base, self.cursor_query_param, _encode(self.rows[0], reverse=True))

    def get_paginated_response(self, data: Any) -> Response:
        return Response({
            "count": self.counted.value,
            "count_is_estimate": self.counted.estimated,
            "next": self.get_next_link(),
            "previous": self.get_previous_link(),
            "results": data,
        })

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        described["required"] = ["count", "count_is_estimate", "next", "previous", "results"]
        described["properties"] = {
            "count": {"type": "integer", "example": 123, "description":
                      f"Exact up to {counting.EXACT_UP_TO:,} instances; above, an estimate."},
            "count_is_estimate": {"type": "boolean", "description": "Whether `count` is an estimate."},
            **described["properties"],
        }
        return described

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [*super().get_schema_operation_parameters(view), {
            "name": "page", "required": False, "in": "query",
            "description": f"A page number, for the pages within the first {OFFSET_UP_TO:,} instances; "
                           "`next` and `previous` (a `cursor`) reach every page.",
            "schema": {"type": "integer", "minimum": 1},
        }]


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise NotFound(f"Invalid page: {text!r} is not a page number (1, 2, ...).")
    return int(text)


def _encode(instance: WorkflowInstance, *, reverse: bool) -> str:
    position = json.dumps([instance.created_at.isoformat(), instance.pk, int(reverse)], separators=(",", ":"))
    return urlsafe_b64encode(position.encode()).decode("ascii").rstrip("=")


def _decode(token: str) -> tuple[datetime, str, bool]:
    """A cursor's position; anything this module did not make is a 404, as in DRF's own."""
    try:
        created, pk, reverse = json.loads(urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        created_at = datetime.fromisoformat(created)
    except (ValueError, TypeError, binascii.Error):  # JSON and Unicode errors are ValueErrors
        raise NotFound(INVALID_CURSOR) from None
    if not findable(pk) or reverse not in (0, 1) or (created_at.tzinfo is None) == settings.USE_TZ:
        raise NotFound(INVALID_CURSOR)
    return created_at, pk, bool(reverse)
