"""Who may use the API: active staff users holding the model's permissions by default, or the
classes named in the settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.module_loading import import_string
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from ..conf import settings
from ..models import WorkflowInstance

#: What each kind of request needs when a view does not say (`permission_actions`): reading
#: needs `view_` (or `change_`, which lets the admin show the page too), anything else `change_`.
READ = ("view", "change")
WRITE = ("change",)


class StaffOnly(BasePermission):
    """Active staff users, whatever permissions they hold; superuser status is not required.

    Workflows carry business data and the API can start and cancel them, so the audience is
    the admin's, not every logged-in user. IsStaff (the default) asks for permissions too.
    """

    message = "Only staff users may use the workflows API."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsStaff(StaffOnly):
    """The default: active staff users holding the workflow instance permission of what they
    do, as in the admin: `view_workflowinstance` to read, `add_` to start, `change_` to
    cancel, fork and send events (`cancel_workflowinstance` also cancels). Superusers hold
    every permission.

    A view names what each method needs in `permission_actions` (method -> the actions, any
    one of which will do); without it, reading needs READ and anything else WRITE.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        needed = required_actions(request, view)
        if not needed or any(request.user.has_perm(permission_name(action)) for action in needed):
            return True
        names = " or ".join(permission_name(action) for action in needed)
        self.message = f"This needs the permission {names}, which the user {request.user.get_username()!r} lacks."
        return False


def required_actions(request: Request, view: Any) -> Sequence[str]:
    """What the request needs: the view's `permission_actions_of(request)` when what it does
    depends on the body (the bulk endpoint's action), else `permission_actions` by method."""
    of_request = getattr(view, "permission_actions_of", None)
    if of_request is not None and request.method not in SAFE_METHODS:
        return tuple(of_request(request))
    declared = getattr(view, "permission_actions", None) or {}
    method = request.method or "GET"
    if method in declared:
        return declared[method]
    if method == "HEAD" and "GET" in declared:
        return declared["GET"]
    return READ if method in SAFE_METHODS else WRITE


def permission_name(action: str) -> str:
    opts = WorkflowInstance._meta
    return f"{opts.app_label}.{action}_{opts.model_name}"


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
