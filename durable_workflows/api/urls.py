"""Mount with `path("api/workflows/", include("durable_workflows.api.urls"))`."""

from __future__ import annotations

from django.urls import path, re_path

from . import views

app_name = "durable_workflows_api"

urlpatterns = [
    path("instances/", views.InstanceListView.as_view(), name="instance-list"),
    # POST only; its GET reads the instance "bulk", like any other id (views.InstanceBulkView).
    path("instances/bulk/", views.InstanceBulkView.as_view(), name="instance-bulk"),
    # Ids are free text, slashes included ("orders/1001"): any id gets its instance or a JSON
    # 404. The operations come first, so POST "a/b/cancel/" cancels "a/b"; they take POST
    # only, and their GET reads the instance "a/b/cancel" (views.InstanceOperationView).
    re_path(r"^instances/(?P<instance_id>[\s\S]+)/cancel/$", views.InstanceCancelView.as_view(), name="instance-cancel"),
    re_path(r"^instances/(?P<instance_id>[\s\S]+)/pause/$", views.InstancePauseView.as_view(), name="instance-pause"),
    re_path(r"^instances/(?P<instance_id>[\s\S]+)/resume/$", views.InstanceResumeView.as_view(), name="instance-resume"),
    re_path(r"^instances/(?P<instance_id>[\s\S]+)/fork/$", views.InstanceForkView.as_view(), name="instance-fork"),
    re_path(r"^instances/(?P<instance_id>[\s\S]+)/events/$", views.InstanceEventsView.as_view(), name="instance-events"),
    re_path(r"^instances/(?P<instance_id>[\s\S]+)/$", views.InstanceDetailView.as_view(), name="instance-detail"),
    path("definitions/", views.DefinitionListView.as_view(), name="definition-list"),
    path("schema/", views.SchemaView.as_view(), name="schema"),
]
