"""The admin at /admin/ and the workflows API at /api/workflows/."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/durable_workflows/workflowinstance/")),
    path("admin/", admin.site.urls),
    path("api/workflows/", include("durable_workflows.api.urls")),
]
