"""System checks name what a project forgot, before it fails at its first start or page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core import checks
from django.test import override_settings

from durable_workflows.checks import (
    check_django_q_installed,
    check_rest_framework_installed,
    check_tasks_framework,
)
from durable_workflows.taskflow import available

# Django 6's model checks ask SQLite whether it has JSON fields, a query: allowed here, so the
# module passes run on its own as in the whole suite.
pytestmark = pytest.mark.django_db(databases="__all__")


def without(app: str) -> list[str]:
    return [name for name in settings.INSTALLED_APPS if name != app]


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id for m in messages if m.id and m.id.startswith("durable_workflows.")]


def test_the_test_project_passes_every_check():
    assert ids(checks.run_checks()) == []


def test_a_missing_django_q_is_an_error_naming_it():
    with override_settings(INSTALLED_APPS=without("django_q")):
        (error,) = check_django_q_installed()
    assert error.id == "durable_workflows.E006" and error.level == checks.ERROR
    assert '"django_q" is not in INSTALLED_APPS' in error.msg
    assert 'add "django_q" to INSTALLED_APPS' in error.hint


@pytest.mark.parametrize("dispatcher", ["durable_workflows.dispatch.InlineDispatcher", object])
def test_another_dispatcher_needs_no_django_q(dispatcher):
    with override_settings(INSTALLED_APPS=without("django_q"), DURABLE_WORKFLOWS={"DISPATCHER": dispatcher}):
        assert check_django_q_installed() == []


def test_migrate_without_django_q_stops_at_the_check():
    """What a project meets: the command refuses, naming the app, instead of a traceback
    about a missing table at the first start."""
    script = (
        "import tests.settings as s\n"
        "s.INSTALLED_APPS = [a for a in s.INSTALLED_APPS if a != 'django_q']\n"
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', '--plan', skip_checks=False)\n"
    )
    # On SQLite in a directory of its own: the check stops the command before it plans.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": ""}
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "durable_workflows.E006" in done.stderr and '"django_q" is not in INSTALLED_APPS' in done.stderr


def test_a_mounted_api_without_rest_framework_is_an_error_naming_it():
    with override_settings(INSTALLED_APPS=without("rest_framework")):
        errors = check_rest_framework_installed()
    assert [e.id for e in errors] == ["durable_workflows.E007"] * 2
    assert [e.msg for e in errors] == [
        '"rest_framework" is not in INSTALLED_APPS, and the URLconf includes durable_workflows.api.urls',
        '"rest_framework" is not in INSTALLED_APPS, and the URLconf includes durable_workflows.metrics.urls',
    ]
    assert 'add "rest_framework" to INSTALLED_APPS' in errors[0].hint


def test_the_api_is_found_however_deep_it_is_mounted():
    with override_settings(INSTALLED_APPS=without("rest_framework"), ROOT_URLCONF="tests.urls_nested_api"):
        assert [e.msg.rsplit(" ", 1)[1] for e in check_rest_framework_installed()] == ["durable_workflows.api.urls"]


def test_no_api_mounted_needs_no_rest_framework():
    with override_settings(INSTALLED_APPS=without("rest_framework"), ROOT_URLCONF="tests.urls_no_api"):
        assert check_rest_framework_installed() == []


@pytest.mark.parametrize("wakeup", ["poll", "notify"])
def test_the_wakeup_setting_takes_poll_and_notify(wakeup):
    with override_settings(DURABLE_WORKFLOWS={"WAKEUP": wakeup}):
        assert ids(checks.run_checks()) == []


@pytest.mark.parametrize("wakeup", ["listen", "", None, 1])
def test_any_other_wakeup_is_an_error_naming_the_setting(wakeup):
    with override_settings(DURABLE_WORKFLOWS={"WAKEUP": wakeup}):
        errors = [m for m in checks.run_checks() if m.id == "durable_workflows.E008"]
    assert len(errors) == 1 and errors[0].level == checks.ERROR
    assert "DURABLE_WORKFLOWS WAKEUP is" in errors[0].msg and repr(wakeup) in errors[0].msg
    assert '"poll"' in errors[0].hint


TASK_BACKEND = "durable_workflows.tasks_backend.DurableTaskBackend"


@pytest.mark.skipif(available(), reason="Django's tasks framework is installed: nothing to refuse")
def test_our_task_backend_without_django_tasks_is_an_error_naming_the_setting_and_what_to_install():
    tasks = {"default": {"BACKEND": TASK_BACKEND}, "other": {"BACKEND": "some.OtherBackend"},
             "emails": {"BACKEND": TASK_BACKEND, "QUEUES": ["emails"]}}
    with override_settings(TASKS=tasks):
        errors = [m for m in checks.run_checks() if m.id == "durable_workflows.E009"]
    assert [e.msg for e in errors] == [
        f"TASKS['default'] names {TASK_BACKEND}, and Django's tasks framework is not installed",
        f"TASKS['emails'] names {TASK_BACKEND}, and Django's tasks framework is not installed",
    ]
    assert all(e.level == checks.ERROR for e in errors)
    assert "pip install 'django-durable-workflows[tasks]'" in errors[0].hint
    assert "Django 6.0" in errors[0].hint


@pytest.mark.skipif(available(), reason="Django's tasks framework is installed: nothing to refuse")
def test_no_task_backend_of_ours_needs_no_tasks_framework():
    with override_settings(TASKS={"default": {"BACKEND": "some.OtherBackend"}}):
        assert check_tasks_framework() == []


@pytest.mark.skipif(not available(), reason="needs Django's tasks framework")
def test_our_task_backend_with_django_tasks_passes():
    with override_settings(TASKS={"default": {"BACKEND": TASK_BACKEND}}):
        assert check_tasks_framework() == []
