"""The instance filters (filters.py) in the admin's list: finished or not, forks, and the
filters the API and the command take, by the same names in the address
(`?forked_from=order-17`, `?created_after=2026-01-31T12:00Z`), each shown in the side bar
while it applies, so that the "select all" actions act on exactly what the list shows."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import filters
from ..bulk import UNFINISHED
from ..states import TERMINAL


class FinishedFilter(admin.SimpleListFilter):
    """Completed, Failed or Cancelled, or not yet: several states at once."""

    title = "finished"
    parameter_name = "finished"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes: completed, failed or cancelled"), ("no", "No: still under way")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            states = TERMINAL if self.value() == "yes" else UNFINISHED
            return queryset.filter(filters.condition(filters.check({"state": list(states)})))
        return queryset


class ForkFilter(admin.SimpleListFilter):
    title = "is a fork"
    parameter_name = "is_fork"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes: made by fork"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(forked_from__isnull=self.value() == "no")
        return queryset


class ByValueFilter(admin.SimpleListFilter):
    """One of the instance filters, given in the address; listed in the side bar (with its
    value) only while it applies. A bad value is answered as Django answers a bad lookup:
    the list without filters and a message naming it."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        try:
            given = filters.from_text({str(self.parameter_name): [value]})
        except filters.FilterError as exc:
            messages.error(request, f"The filter {self.parameter_name!r}: {exc}")
            raise IncorrectLookupParameters(str(exc)) from None
        return queryset.filter(filters.condition(given))


def by_value(name: str) -> type[ByValueFilter]:
    title = name.replace("_", " ")
    return type(f"{name.title().replace('_', '')}Filter", (ByValueFilter,), {"title": title, "parameter_name": name})


BY_VALUE = tuple(by_value(name) for name in ("forked_from", "parent", "id_prefix", *filters.MOMENTS))
