from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/workflows/", include("durable_workflows.api.urls")),
]
urlpatterns.append(path("metrics/", include("durable_workflows.metrics.urls")))
