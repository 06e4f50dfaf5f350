"""App config: finds every installed app's `workflows` module, as the admin finds `admin.py`."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import autodiscover_modules


class DurableWorkflowsConfig(AppConfig):
    name = "durable_workflows"
    verbose_name = "Durable workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        autodiscover_modules("workflows")
        from . import taskflow

        taskflow.install()  # the built-in workflow of django.tasks' tasks, where that exists
        _install_observers()
        try:
            from . import scheduling
        except ImportError:  # django-q2 missing: the engine still works with another dispatcher
            return
        scheduling.connect()


def _install_observers() -> None:
    """Log records say what they are about; metrics and tracing feed themselves when their
    (optional) library is installed."""
    from . import logs

    logs.install()
    try:
        from . import metrics
    except ImproperlyConfigured:  # prometheus-client is not installed
        pass
    else:
        metrics.install()
    try:
        from . import tracing
    except ImportError:
        pass
    else:
        tracing.install()
