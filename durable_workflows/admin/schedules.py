"""The admin's Schedules page: every workflow with `schedule=`, when it runs next and which
instance it started last.

Its rows come from the registry, not the table: a schedule is code, and one that has not
fired yet is shown all the same. The `ScheduleFire` rows add what has happened.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

from ..engine.schedules import ScheduleStatus, statuses
from .display import relative
from .readonly import ReadOnlyAdmin


def _with_links(status: ScheduleStatus) -> dict[str, Any]:
    gone = status.last_state in ("", "purged")
    return {
        "status": status,
        "next_fire_in": relative(status.next_fire_at) if status.next_fire_at else "",
        "last_instance_url": "" if gone else _instance_url(status.last_instance_id),
    }


def _instance_url(instance_id: str) -> str:
    try:
        return reverse("admin:durable_workflows_workflowinstance_change", args=[instance_id])
    except NoReverseMatch:
        return ""


class ScheduleAdmin(ReadOnlyAdmin):
    """Schedules are changed in code, and a deploy changes them."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            return super().changelist_view(request, extra_context)  # Django's own refusal
        context = {
            **self.admin_site.each_context(request),
            "title": "Schedules",
            "opts": self.model._meta,
            "rows": [_with_links(status) for status in statuses()],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/durable_workflows/schedulefire/change_list.html", context)
