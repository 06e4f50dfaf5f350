"""Change-list actions: cancel, pause, resume, resume now, fork and recover the selected instances.

Each instance is handled on its own, so one refusal (an instance that finished meanwhile)
neither stops the others nor turns into an error page: it becomes a warning message.

Cancel and fork of "all N matching" (Django's select across) go through `client.bulk`'s
code instead, which takes the filtered list a chunk at a time: a million instances are
acted on in bounded memory, and the instances that cannot take the action are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import bulk
from ..exceptions import InvalidTransition, WorkflowNotFound
from . import operations

if TYPE_CHECKING:
    from .instance import WorkflowInstanceAdmin

#: How many refusals are listed one by one before they are summarised.
MAX_REFUSALS_LISTED = 10


def cancel_reason(request: HttpRequest) -> str:
    return f"cancelled in the admin by {request.user.get_username()}"


def apply(
    modeladmin: WorkflowInstanceAdmin, request: HttpRequest, ids: list[str],
    operation: Callable[[str], str], verb: str,
) -> tuple[int, int]:
    """Run `operation` on each id; report what it did and what it refused."""
    done: list[str] = []
    refused: list[str] = []
    for instance_id in ids:
        try:
            done.append(operation(instance_id))
        except (operations.Refused, InvalidTransition, WorkflowNotFound) as error:
            refused.append(str(error))
    if len(done) == 1:
        modeladmin.message_user(request, done[0], messages.SUCCESS)
    elif done:
        modeladmin.message_user(request, f"{verb} {len(done)} instances.", messages.SUCCESS)
    for reason in refused[:MAX_REFUSALS_LISTED]:
        modeladmin.message_user(request, f"Not {verb.lower()}: {reason}", messages.WARNING)
    if len(refused) > MAX_REFUSALS_LISTED:
        modeladmin.message_user(
            request, f"… and {len(refused) - MAX_REFUSALS_LISTED} more not {verb.lower()}.",
            messages.WARNING,
        )
    return len(done), len(refused)


def _ids(queryset: QuerySet) -> list[str]:
    return list(queryset.values_list("pk", flat=True))


def across(modeladmin: WorkflowInstanceAdmin, request: HttpRequest, queryset: QuerySet, action: str,
           done: str) -> bool:
    """With "select all N matching": do `action` to the whole filtered list, by chunks, and
    report the count; False when only the ticked rows were chosen."""
    if request.POST.get("select_across") != "1":
        return False
    count = bulk.apply(action, queryset, cancel_reason(request) if action == "cancel" else "")
    modeladmin.message_user(request, done.format(count=count), messages.SUCCESS if count else messages.WARNING)
    return True


@admin.action(description="Cancel selected instances", permissions=["cancel"])
def cancel_selected(modeladmin: WorkflowInstanceAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    if across(modeladmin, request, queryset, "cancel",
              "Cancelled {count} instances (those running stop at their next step boundary); "
              "finished ones were left as they were."):
        return
    reason = cancel_reason(request)
    apply(modeladmin, request, _ids(queryset), lambda i: operations.cancel(i, reason), "Cancelled")


def pause_reason(request: HttpRequest) -> str:
    return f"paused in the admin by {request.user.get_username()}"


@admin.action(description="Pause selected instances", permissions=["cancel"])
def pause_selected(modeladmin: WorkflowInstanceAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    reason = pause_reason(request)
    apply(modeladmin, request, _ids(queryset), lambda i: operations.pause(i, reason), "Paused")


@admin.action(description="Resume selected held instances", permissions=["cancel"])
def release_selected(modeladmin: WorkflowInstanceAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    apply(modeladmin, request, _ids(queryset), operations.release, "Resumed")


@admin.action(description="Resume selected Paused instances now", permissions=["resume"])
def resume_selected(modeladmin: WorkflowInstanceAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    apply(modeladmin, request, _ids(queryset), operations.resume_now, "Resumed")


@admin.action(description="Fork selected instances (to repair them after a fix)", permissions=["resume"])
def fork_selected(modeladmin: WorkflowInstanceAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    if across(modeladmin, request, queryset, "fork",
              "Made {count} forks; instances not finished, or that the code deployed now cannot run, were left out."):
        return
    apply(modeladmin, request, _ids(queryset), operations.fork, "Forked")


@admin.action(description="Recover selected stale Running instances", permissions=["resume"])
def recover_selected(modeladmin: WorkflowInstanceAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    apply(modeladmin, request, _ids(queryset), operations.recover, "Recovered")
