"""Counts for pages over a big table: exact while they are small, estimated above that.

Counting a million rows takes PostgreSQL a scan of them all, on every page view. So each
count is first taken exactly up to EXACT_UP_TO rows (an index range, cheap); past that the
page shows PostgreSQL's own estimate (the planner's, kept fresh by autovacuum's ANALYZE) and
says so. SQLite, and a table that has never been analysed, get exact counts up to COUNT_CAP
rows (more is COUNT_CAP, marked estimated). The admin's lists and the API's share them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

from . import database

EXACT_UP_TO = 10_000
#: Where no planner estimates, counting stops here: a count over it is this, marked estimated.
COUNT_CAP = 1_000_000
#: A page starting deeper in reads its ids first: an OFFSET over the narrow ordering index
#: instead of over whole rows and their joins.
DIRECT_OFFSET_UP_TO = 5_000


@dataclass(frozen=True)
class Count:
    value: int
    estimated: bool = False

    def __str__(self) -> str:
        return f"≈{self.value:,}" if self.estimated else f"{self.value:,}"


def count(queryset: QuerySet[Any]) -> Count:
    """How many rows `queryset` has: exact up to EXACT_UP_TO, PostgreSQL's estimate past it
    (elsewhere exact up to COUNT_CAP)."""
    return count_each([queryset])[0]


def count_each(querysets: Sequence[QuerySet[Any]]) -> list[Count]:
    """`count()` of each queryset, their capped counts taken in one query (the admin's list
    counts each state: one round trip, not one a state)."""
    found = []
    for queryset, capped in zip(querysets, _capped(querysets, EXACT_UP_TO), strict=True):
        if capped <= EXACT_UP_TO:
            found.append(Count(capped))
            continue
        estimate = planner_rows(queryset) if database.connection().vendor == "postgresql" else None
        if estimate is not None:
            found.append(Count(max(estimate, capped), estimated=True))
            continue
        counted = _capped([queryset], COUNT_CAP)[0]
        found.append(Count(min(counted, COUNT_CAP), estimated=counted > COUNT_CAP))
    return found


def _capped(querysets: Sequence[QuerySet[Any]], cap: int) -> list[int]:
    """Each queryset's rows, counted up to `cap + 1`: an index range of at most that many."""
    parts: list[str] = []
    params: list[Any] = []
    if not querysets:
        return []
    for queryset in querysets:
        sql, values = _sql(queryset.order_by().values("pk")[: cap + 1])
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) capped)")
        params.extend(values)
    with database.connection().cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        return [int(n) for n in cursor.fetchone()]


def _sql(queryset: QuerySet[Any]) -> tuple[str, tuple[Any, ...]]:
    return queryset.query.get_compiler(using=queryset.db).as_sql()


def planner_rows(queryset: QuerySet[Any]) -> int | None:
    """The rows PostgreSQL's planner expects the query to return; None without statistics."""
    sql, params = _sql(queryset.order_by().values("pk"))
    with database.connection().cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    rows = int(plan[0]["Plan"]["Plan Rows"])
    return rows if rows > 1 else None


class EstimatingPaginator(Paginator):
    """The admin list's paginator, counting as above: Django's counts every row of the
    list's query on every page view."""

    @cached_property
    def count(self) -> int:
        self.estimated = False
        if not isinstance(self.object_list, QuerySet):
            return len(self.object_list)
        found = count(self.object_list)
        self.estimated = found.estimated
        return found.value

    def page(self, number: Any) -> Page:
        """Deep pages stay usable (a second or so at 500,000 rows in, rather than many): the
        page's ids are read alone, then its rows by id."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if bottom <= DIRECT_OFFSET_UP_TO or not isinstance(self.object_list, QuerySet):
            return super().page(number)
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        ids = list(self.object_list.values_list("pk", flat=True)[bottom:top])
        return Page(self.object_list.filter(pk__in=ids), number, self)
