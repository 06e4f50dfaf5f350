"""An application table for the atomic-step tests: what a step's own writes look like."""

from __future__ import annotations

from django.db import models


class Ledger(models.Model):
    key = models.CharField(max_length=100)
    amount = models.IntegerField()
