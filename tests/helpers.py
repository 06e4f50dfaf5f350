"""Small test utilities: waiting on a condition with a deadline, never a fixed sleep; running
the management command in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`manage.py durable_workflows ARGS` in a new process, on the test database."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DW_DB_NAME": connection.settings_dict["NAME"],
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "django", "durable_workflows", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def run_python(script: str) -> subprocess.CompletedProcess:
    """`script` in a new Python process with the test settings (not the test database): what
    a project sees at start-up, before any test fixture."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def in_thread(target: Callable[[], Any]) -> threading.Thread:
    """Start `target` in a thread that closes its database connections when it ends, so that
    none is left open when the test database is dropped."""

    def run() -> None:
        try:
            target()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def queued(workflow: str, *args: Any, **kwargs: Any) -> Any:
    """Start `workflow` without dispatching its run: the test runs it (execute) when it wants."""
    from django.test import override_settings

    from durable_workflows import client

    with override_settings(DURABLE_WORKFLOWS={"DISPATCHER": "tests.test_engine_client.NoDispatch"}):
        return client.start(workflow, *args, **kwargs)


@contextmanager
def other_connection() -> Iterator[Any]:
    """A second connection to the test database, through Django (so whatever the driver,
    psycopg 3 or psycopg2), closed afterwards."""
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        yield other
    finally:
        other.close()


def staff_user(username: str = "operator", actions: tuple[str, ...] = ("view", "add", "change")) -> Any:
    """An active staff user (not a superuser) holding the workflow instance permissions of
    `actions` ("view", "add", "change", "cancel"): what the API's default classes ask."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create(username=username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="durable_workflows", codename__in=[f"{a}_workflowinstance" for a in actions]))
    return user


def logged(instance_id: str) -> list[str]:
    """The kinds of the instance's event log, oldest first: its rows and the step events
    read from its records, as the admin shows them."""
    from durable_workflows.engine.eventlog import event_log

    return [event.kind for event in event_log(instance_id)[0]]
