"""App config: finds every installed app's `workflows` module, as the admin finds `admin.py`."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DurableWorkflowsConfig(AppConfig):
    name = "durable_workflows"
    verbose_name = "Durable workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        autodiscover_modules("workflows")
        try:
            from . import scheduling
        except ImportError:  # django-q2 missing: the engine still works with another dispatcher
            return
        scheduling.connect()
