"""A project URLconf that mounts the API two includes deep."""

from django.urls import include, path

urlpatterns = [path("ops/", include([path("v1/", include("durable_workflows.api.urls"))]))]
