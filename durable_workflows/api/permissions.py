"""Who may use the API: staff by default, or the classes named in the settings."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ..conf import settings


class IsStaff(BasePermission):
    """Active staff users; superuser status is not required.

    Workflows carry business data and the API can start and cancel them, so the default is
    the same audience as the admin, not every logged-in user.
    """

    message = "Only staff users may use the workflows API."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def configured_permissions(names: Any = None) -> list[BasePermission]:
    """Instances of DURABLE_WORKFLOWS["API_PERMISSION_CLASSES"] (or of `names`), read on
    every request so that a settings change (or `override_settings` in a test) takes effect
    at once."""
    if names is None:
        names = settings.API_PERMISSION_CLASSES
    if isinstance(names, (str, type)):
        names = [names]
    classes = [import_string(name) if isinstance(name, str) else name for name in names]
    return [permission() for permission in classes]
