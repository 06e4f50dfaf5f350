"""`path("metrics/", include("durable_workflows.metrics.urls"))`"""

from django.urls import path

from .views import MetricsView

app_name = "durable_workflows_metrics"

urlpatterns = [path("", MetricsView.as_view(), name="metrics")]
