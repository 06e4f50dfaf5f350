"""The Django admin for workflow instances and schedules, registered on the default `admin.site`."""

from __future__ import annotations

from django.contrib import admin

from ..models import ScheduleFire, WorkflowInstance
from .instance import WorkflowInstanceAdmin
from .schedules import ScheduleAdmin

admin.site.register(WorkflowInstance, WorkflowInstanceAdmin)
admin.site.register(ScheduleFire, ScheduleAdmin)

__all__ = ["ScheduleAdmin", "WorkflowInstanceAdmin"]
