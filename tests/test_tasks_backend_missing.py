"""Without Django's tasks framework (Django 5.2, no backport), the backend says what it needs."""

from __future__ import annotations

import importlib
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from durable_workflows import registry
from durable_workflows.taskflow import TASK_WORKFLOW, available


@pytest.mark.skipif(available(), reason="django.tasks is installed here")
def test_importing_the_backend_names_django_6_and_the_backport():
    sys.modules.pop("durable_workflows.tasks_backend", None)
    with pytest.raises(ImproperlyConfigured, match=r"Django 6\.0 or later.*django-tasks backport.*\[tasks\]"):
        importlib.import_module("durable_workflows.tasks_backend")


@pytest.mark.skipif(available(), reason="django.tasks is installed here")
def test_the_task_workflow_is_not_registered():
    assert registry.registered(TASK_WORKFLOW) is None
