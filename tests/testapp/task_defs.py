"""Tasks of Django's tasks framework for tests/test_tasks_backend.py (Django 6.0+, or the
django-tasks backport)."""

from __future__ import annotations

import django

from durable_workflows import workflow
from durable_workflows.tasks_framework import task

FLAKY = {"left": 0}


@task
def add(a, b):
    return a + b


@task(priority=10, queue_name="emails")
def send_welcome(user_id):
    return f"welcome {user_id}"


@task
async def async_double(n):
    return 2 * n


@task(backend="retrying")
def flaky(n):
    if FLAKY["left"] > 0:
        FLAKY["left"] -= 1
        raise ConnectionError(f"try again ({FLAKY['left']} failures to go)")
    return n


@task(backend="patient")
def broken():
    raise KeyError("missing")


@task(takes_context=True)
def attempt_number(context):
    return context.attempt


@workflow("tests.tasks.welcome_flow")
def welcome_flow(wf, user_id):
    return wf.step("Welcome", send_welcome, user_id)


@task(takes_context=True)
def logged_nap(context, seconds):
    """Writes its start and end to the workers' step log (tests/workers/steplog.py)."""
    from tests.workers.workflows import logged

    return logged(context.task_result.id, context.attempt, "nap", seconds)


if django.VERSION >= (6, 1):  # @task passes keywords of its own on to the backend's task class
    from durable_workflows import RetryPolicy

    ONCE_FLAKY = {"left": 0}

    @task(retry={"max_attempts": 2, "initial_delay": 0, "jitter": False})
    def flaky_once(n):
        if ONCE_FLAKY["left"] > 0:
            ONCE_FLAKY["left"] -= 1
            raise ConnectionError("try again")
        return n

    @task(retry=RetryPolicy(max_attempts=1), timeout="0.2s")
    def overdue():
        import time

        time.sleep(5)
