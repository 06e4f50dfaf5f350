"""The metrics endpoint: Prometheus' text format, behind the API's permission classes unless
METRICS_PERMISSION_CLASSES names others (`[]`: open, for a scraper inside your network)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from ..api.permissions import configured_permissions
from ..conf import settings
from ..models import WorkflowInstance
from ..states import State
from . import REGISTRY


class StateCollector:
    """Instances per state, read from the database at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("durable_workflows_instances", "Instances per state, from the database.",
                                   labels=["state"])
        counts = dict(WorkflowInstance.objects.order_by().values_list("state").annotate(n=Count("*")))
        for state in State:
            family.add_metric([state.value], counts.get(state.value, 0))
        yield family


def registry() -> CollectorRegistry:
    """Every process's values when PROMETHEUS_MULTIPROC_DIR is set, else this process's."""
    collected = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(collected)
    else:
        collected.register(_ThisProcess())
    collected.register(StateCollector())
    return collected


class _ThisProcess:
    """Our metrics as this process counted them (no multi-process directory)."""

    def collect(self) -> Iterator[Any]:
        return iter(REGISTRY.collect())


class MetricsView(APIView):
    def get_permissions(self) -> list[BasePermission]:
        names = settings.METRICS_PERMISSION_CLASSES
        return configured_permissions(names)

    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
