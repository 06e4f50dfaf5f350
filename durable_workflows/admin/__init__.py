"""The Django admin for workflow instances, registered on the default `admin.site`."""

from __future__ import annotations

from django.contrib import admin

from ..models import WorkflowInstance
from .instance import WorkflowInstanceAdmin

admin.site.register(WorkflowInstance, WorkflowInstanceAdmin)

__all__ = ["WorkflowInstanceAdmin"]
