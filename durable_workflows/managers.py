"""The manager of every model of the app."""

from __future__ import annotations

from typing import TypeVar

from django.db import models

_M = TypeVar("_M", bound=models.Model)


class AliasManager(models.Manager[_M]):
    """Every query on the `DATABASE` setting's alias, whatever the project's routers say
    (see database.py). It is also each model's base manager, so related objects and
    `refresh_from_db` read from there too."""

    def get_queryset(self) -> models.QuerySet[_M]:
        from .conf import settings

        return super().get_queryset().using(settings.DATABASE)
