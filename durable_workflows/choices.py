"""The kinds and states of a step record and the reasons of an alarm: the choices of their
columns, importable from `durable_workflows.models` as before."""

from __future__ import annotations

from django.db import models


class StepKind(models.TextChoices):
    STEP = "step", "Step"
    SLEEP = "sleep", "Sleep"
    EVENT = "event", "Event wait"
    START_CHILD = "start_child", "Child start"
    CHILD = "child", "Child wait"
    PATCH = "patch", "Patch marker"
    PARALLEL = "parallel", "Parallel branches"


class StepState(models.TextChoices):
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting to retry"
    SLEEPING = "sleeping", "Sleeping"
    AWAITING = "awaiting", "Awaiting"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class AlarmReason(models.TextChoices):
    SLEEP = "sleep", "Sleep"
    RETRY = "retry", "Retry delay"
    EVENT = "event", "Event"
    CHILD = "child", "Child finished"
    DEADLINE = "deadline", "Workflow deadline"
    START = "start", "Delayed start"
    RATE = "rate", "Rate limit"
    LIMITER = "limiter", "Step limiter"
    CONTINUED = "continued", "Continued as new"
