"""Workflow runs on another `django.tasks` backend (`TasksDispatcher`), and the periodic work
done beside its workers by `manage.py durable_workflows ticker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings

from durable_workflows import client
from durable_workflows.dispatch import TasksDispatcher
from durable_workflows.engine import fire_alarms
from durable_workflows.models import TickerLease
from durable_workflows.taskflow import available
from tests.helpers import ROOT, wait_until
from tests.testapp.workflows import CALLS

pytestmark = pytest.mark.django_db(transaction=True)

needs_tasks = pytest.mark.skipif(not available(), reason="needs Django's tasks framework: Django 6.0+, "
                                                          "or the django-tasks backport")
ON_IMMEDIATE = {"DISPATCHER": "durable_workflows.dispatch.TasksDispatcher", "TASKS_BACKEND": "immediate"}


@pytest.mark.skipif(available(), reason="Django's tasks framework is installed here")
def test_without_django_tasks_the_dispatcher_names_what_it_needs():
    with pytest.raises(ImproperlyConfigured, match=r"Django 6\.0 or later.*django-tasks backport"):
        TasksDispatcher("immediate")


@needs_tasks
def test_a_workflow_with_a_sleep_runs_through_the_immediate_backend():
    with override_settings(DURABLE_WORKFLOWS=ON_IMMEDIATE):
        handle = client.start("tests.nap", "0.2s")
        assert handle.state == "paused" and CALLS["before"] == 1 and CALLS["after"] == 0
        wait_until(lambda: fire_alarms() or handle.refresh().state == "completed", timeout=10,
                   message="the alarm to fire")
        assert handle.refresh().state == "completed"
    assert CALLS["before"] == 1 and CALLS["after"] == 1


@needs_tasks
@pytest.mark.parametrize("alias, says", [
    ("missing", r"TASKS alias 'missing', which settings.TASKS does not define"),
    ("default", r"TASKS alias 'default', whose backend is durable_workflows' own DurableTaskBackend.*loop"),
])
def test_an_alias_it_cannot_use_is_refused(alias, says):
    with pytest.raises(ImproperlyConfigured, match=says):
        TasksDispatcher(alias)
    with override_settings(DURABLE_WORKFLOWS={**ON_IMMEDIATE, "TASKS_BACKEND": alias}):
        with pytest.raises(ImproperlyConfigured, match=says):
            client.start("tests.greet", "Ada")


# -- manage.py durable_workflows ticker ------------------------------------------------------

def ticker_process(name: str) -> subprocess.Popen:
    """`manage.py durable_workflows ticker --name NAME` on the test database; its resumes run
    in that process (ImmediateBackend on Django 6, InlineDispatcher before)."""
    dispatcher = ("durable_workflows.dispatch.TasksDispatcher" if available()
                  else "durable_workflows.dispatch.InlineDispatcher")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DW_DB_NAME": connection.settings_dict["NAME"],
           "DW_DISPATCHER": dispatcher, "DW_TASKS_BACKEND": "immediate", "DW_LEASE_SECONDS": "3", "DW_HEARTBEAT_SECONDS": "1"}
    return subprocess.Popen([sys.executable, "-m", "django", "durable_workflows", "ticker", "--name", name],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def holder_pid(name: str) -> int | None:
    row = TickerLease.objects.filter(name=name).first()
    return int(row.holder.split(":")[-2]) if row is not None and row.holder else None


def stop(process: subprocess.Popen) -> tuple[str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_the_ticker_command_fires_a_due_alarm_and_gives_its_lease_back_on_sigterm():
    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}):
        handle = client.start("tests.nap", "0.5s")
    assert handle.state == "paused"
    process = ticker_process("cmd-1")
    try:
        wait_until(lambda: holder_pid("cmd-1") == process.pid, timeout=30, message="the ticker to take its lease")
        wait_until(lambda: handle.refresh().state == "completed", timeout=30, message="the ticker to fire the alarm")
        assert handle.result() == "rested"
    finally:
        out, err = stop(process)
    assert process.returncode == 0, err
    assert "Ticker of cluster 'cmd-1' stopped" in out
    assert holder_pid("cmd-1") is None


def test_two_ticker_commands_of_one_name_take_turns_at_its_lease():
    first, second = ticker_process("cmd-2"), ticker_process("cmd-2")
    try:
        pids = {first.pid, second.pid}
        holder = wait_until(lambda: holder_pid("cmd-2") in pids and holder_pid("cmd-2"), timeout=30,
                            message="one ticker to take the lease")
        held, other = (first, second) if holder == first.pid else (second, first)
        # The other only tries; the lease stays with the one that took it while it runs.
        wait_until(lambda: other.poll() is None and TickerLease.objects.filter(name="cmd-2").count() == 1,
                   timeout=5, message="the two tickers to be running")
        assert holder_pid("cmd-2") == held.pid
        out, err = stop(held)
        assert held.returncode == 0, err
        wait_until(lambda: holder_pid("cmd-2") == other.pid, timeout=30,
                   message="the other ticker to take the released lease")
    finally:
        for process in (first, second):
            stop(process)
    assert first.returncode == 0 and second.returncode == 0
    assert holder_pid("cmd-2") is None
