"""The rows through which the workers of every cluster coordinate, rather than the record of
any one instance: a schedule's last fire time, a cluster's ticker lease, the units of a step
limiter. Models of the app, imported by `models`."""

from __future__ import annotations

from django.db import models

from .managers import AliasManager


class LimiterUnit(models.Model):
    """One use of a step limiter (the LIMITERS setting), kept for its rate's period."""

    limiter = models.CharField("limiter", max_length=100, help_text="Its name in the LIMITERS setting.")
    taken_at = models.DateTimeField("taken", help_text="When a step took it, just before its function ran.")

    objects = AliasManager()

    class Meta:
        base_manager_name = "objects"
        verbose_name = "limiter unit"
        verbose_name_plural = "limiter units"
        indexes = [models.Index(fields=["limiter", "taken_at"], name="dw_limiter_window")]


class ScheduleFire(models.Model):
    """The last fire time a scheduled workflow was started for (`@workflow(schedule=...)`).

    The instance of a fire time has an id derived from it, which already makes a start once
    per fire time whatever the number of clusters; this row keeps that true after retention
    has deleted the instance, and lets a pass skip every schedule that is not due in one
    query."""

    workflow = models.CharField("workflow", max_length=255, primary_key=True)
    last_fire_at = models.DateTimeField("last fire time", help_text="The latest fire time started.")
    last_instance_id = models.CharField(
        "last instance", max_length=255, help_text="The instance started for that fire time.",
    )
    fired_at = models.DateTimeField("started at", help_text="When a worker started it.")

    objects = AliasManager()

    class Meta:
        base_manager_name = "objects"
        verbose_name = "schedule"
        verbose_name_plural = "schedules"
        ordering = ["workflow"]

    def __str__(self) -> str:
        return f"{self.workflow} last fired for {self.last_fire_at.isoformat()}"


class TickerLease(models.Model):
    """Which process of a cluster runs its ticker, the periodic work done once per cluster
    (firing alarms, recovery, lost tasks, schedules, retention): the one whose lease has not
    expired. One row per cluster name; the other processes of the cluster only try, now and
    then, to take it, and one of them does once it is released or has expired."""

    name = models.CharField("cluster", max_length=255, primary_key=True,
                            help_text="The django-q2 cluster's name (Q_CLUSTER name).")
    holder = models.CharField("holder", max_length=255, blank=True, default="",
                              help_text="The process holding it (host:pid:token); blank once released.")
    taken_at = models.DateTimeField("taken", null=True, blank=True,
                                    help_text="When the holder took it.")
    expires_at = models.DateTimeField("expires", help_text="Until when the holder holds it without renewing.")

    objects = AliasManager()

    class Meta:
        base_manager_name = "objects"
        verbose_name = "ticker lease"

    def __str__(self) -> str:
        return f"ticker of {self.name}: {self.holder or 'nobody'}"
