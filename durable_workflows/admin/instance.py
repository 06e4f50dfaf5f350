"""The workflow instance admin: a read-only list and page, and actions that use the engine.

Nothing here can edit a field. The change permission is never granted to the form; the
model's `change_workflowinstance` permission instead allows cancel, "resume now", fork and
"recover", as in the API; `cancel_workflowinstance` allows cancelling too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from .. import client, codecs, counting
from ..codecs import PLACEHOLDER
from ..engine import clock, concurrency
from ..engine.instances import findable
from ..exceptions import InvalidTransition, UnknownWorkflow, WorkflowNotFound
from ..models import AlarmReason, StepKind, StepRecord, StepState, WorkflowInstance
from ..registry import all_definitions, get_definition, registered
from ..states import TERMINAL, State, as_state
from . import actions, dashboard, operations, timeline
from .badges import held_badge, state_badge
from .display import SHOWN, alarm_text, capped, decode, pretty, pretty_input, relative, shown
from .list_filters import BY_VALUE, FinishedFilter, ForkFilter
from .readonly import ReadOnlyAdmin

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

# The columns the list reads; large text (input, result, traceback) stays in the database.
LIST_FIELDS = (
    "id", "workflow", "state", "created_at", "updated_at", "finished_at", "error_type",
    "concurrency_key", "slot_held", "generation", "rate_key", "held", "priority", "start_at", "alarm__fire_at", "alarm__fired_at", "alarm__reason",
)


class WorkflowFilter(admin.SimpleListFilter):
    """Registered workflows, from the registry: no DISTINCT over a large table."""

    title = "workflow"
    parameter_name = "workflow"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(d.name, d.name) for d in all_definitions()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(workflow=value) if value else queryset


class HasParentFilter(admin.SimpleListFilter):
    """Children (started by another workflow with wf.start_child) or top-level instances."""

    title = "has parent"
    parameter_name = "has_parent"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes: a child workflow"), ("no", "No: started from outside")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(parent__isnull=self.value() == "no")
        return queryset


class InstanceChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        refuse_nul_filters(request, self.get_filters_params())
        return super().get_queryset(request, exclude_parameters).only(*LIST_FIELDS)

    def get_results(self, request: HttpRequest) -> None:
        """The page's rows, each with its place in its concurrency queue: one query for the
        page, not two per row."""
        super().get_results(request)
        behind = concurrency.queued_behind_each(self.result_list)
        for obj in self.result_list:
            obj._dw_queued_behind = behind.get(obj.pk)


def refuse_nul_filters(request: HttpRequest, params: dict[str, list[str]]) -> None:
    """A filter value with a NUL matches nothing (no stored text has one) and PostgreSQL
    refuses it as a query parameter: it is a bad lookup, answered as Django answers one (the
    list without filters), with a message naming it, as Django's search box does for NUL."""
    for name, values in params.items():
        if any("\x00" in value for value in values):
            messages.error(request, f"Null characters are not allowed in the filter {name!r}.")
            raise IncorrectLookupParameters(f"a NUL in the filter {name!r}")


class WorkflowInstanceAdmin(ReadOnlyAdmin):
    # Narrow enough for a 1,400 px window with the app list open: the last update and the
    # long form of dates are on the instance page.
    list_display = ("id", "workflow", "state_badge", "generation", "created", "next_alarm", "error_type")
    list_filter = ("state", "held", FinishedFilter, WorkflowFilter, HasParentFilter, ForkFilter, "created_at", "finished_at",
                   *BY_VALUE)
    list_select_related = ("alarm",)
    search_fields = ("id", "workflow")
    search_help_text = "The beginning of an instance id or of a workflow name."
    ordering = ("-created_at",)
    show_full_result_count = False
    list_per_page = 50
    actions = (actions.cancel_selected, actions.pause_selected, actions.release_selected, actions.resume_selected,
               actions.fork_selected, actions.recover_selected)
    change_form_template = "admin/durable_workflows/workflowinstance/change_form.html"
    change_list_template = "admin/durable_workflows/workflowinstance/change_list.html"
    readonly_fields = (
        "id", "workflow", "state_badge", "pending_alarm", "waiting_for", "inbox_display",
        "parent_link", "children_links", "forked_from_link",
        "deadline_at", "priority", "start_at", "progress", "created_at", "generation", "generation_started_at",
        "started_at", "finished_at", "updated_at", "input_display", "result_display",
        "error_display", "cancel_reason", "held_reason", "run_count", "last_mode", "epoch", "lease_owner",
        "lease_expires_at", "recovery_count", "cancel_requested", "dispatched_at", "concurrency_display",
        "rate_limit_display",
    )

    class Media:
        css = {"all": ("durable_workflows/admin.css",)}

    # -- permissions: read-only pages (ReadOnlyAdmin), state changes only through actions ----
    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(self._perm("change")) or request.user.has_perm(self._perm("cancel"))

    def has_resume_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(self._perm("change"))

    def _perm(self, action: str) -> str:
        return f"{self.opts.app_label}.{get_permission_codename(action, self.opts)}"

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        # An id no instance can have is "does not exist" (Django's message), not a query
        # PostgreSQL refuses.
        if not findable(unquote(object_id)):
            return None
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            setattr(obj, SHOWN, codecs.shown_to(request.user))
        return obj

    def response_action(self, request: HttpRequest, queryset: QuerySet, *args: Any, **kwargs: Any,
                        ) -> HttpResponse | None:
        """Selected ids no instance can have select nothing, as ids of deleted ones do
        (Django filters the selection by `pk__in`, which PostgreSQL refuses with a NUL)."""
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        if any(not findable(value) for value in selected):
            cleaned = request.POST.copy()
            cleaned.setlist(ACTION_CHECKBOX_NAME, [value for value in selected if findable(value)])
            posted: Any = request
            posted.POST = cleaned
        return super().response_action(request, queryset, *args, **kwargs)

    # -- list ----------------------------------------------------------------------------------
    def action_checkbox(self, obj: Any) -> SafeString:
        """Django's checkbox, written out: its widget renders templates for each row, which
        took a third of the list's time."""
        label = gettext("Select this object for an action - {}").format(obj)
        return format_html('<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
                           ACTION_CHECKBOX_NAME, str(obj.pk), label)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return InstanceChangeList

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # The "all N children" link of an instance page with more than CHILDREN_SHOWN.
        return lookup == "parent__id__exact" or super().lookup_allowed(lookup, value, request)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Prefix matches on the id or the workflow: both are served by an index."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(pk__startswith=term) | Q(workflow__startswith=term)), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        by_state = state_counts()
        total = counting.Count(sum(c.value for c in by_state.values()), any(c.estimated for c in by_state.values()))
        extra_context = {
            **(extra_context or {}),
            "state_counts": [
                {
                    "state": state,
                    "count": by_state[state].value,
                    "shown": str(by_state[state]),
                    "badge": state_badge(state),
                    "query": f"?state__exact={state.value}",
                }
                for state in State
            ],
            "total_count": total.value,
            "total_shown": str(total),
            "counts_estimated": total.estimated,
            "dashboard_url": reverse("admin:durable_workflows_workflowinstance_dashboard"),
        }
        return super().changelist_view(request, extra_context)

    def get_paginator(self, request: HttpRequest, queryset: QuerySet, per_page: int, orphans: int = 0,
                      allow_empty_first_page: bool = True) -> counting.EstimatingPaginator:
        return counting.EstimatingPaginator(queryset, per_page, orphans, allow_empty_first_page)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: WorkflowInstance) -> str:
        return format_html('<time datetime="{}">{}</time>', obj.created_at.isoformat(),
                           timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M"))

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: WorkflowInstance) -> str:
        if obj.held:
            return format_html("{} {}", state_badge(obj.state), held_badge())
        return state_badge(obj.state)

    @admin.display(description="resumes")
    def next_alarm(self, obj: WorkflowInstance) -> str:
        limited = _rate_limited_text(obj)
        if limited:
            return limited
        read = getattr(obj, "_dw_queued_behind", _NOT_READ)
        # The change list reads every row's place in one query; any other caller asks.
        behind = concurrency.queued_behind(obj) if read is _NOT_READ else cast("int | None", read)
        if behind is not None:
            return _queued_behind_text(obj, behind)
        alarm = _alarm(obj)
        if alarm is not None and alarm.reason == AlarmReason.START and as_state(obj.state) == State.QUEUED:
            return f"{relative(alarm.fire_at)} (scheduled start)"
        if alarm is None or as_state(obj.state) != State.PAUSED:
            return ""
        if alarm.fired_at is None and alarm.fire_at > clock.now():
            return f"{relative(alarm.fire_at)} ({alarm.get_reason_display().lower()})"
        return alarm_text(alarm.fire_at, alarm.fired_at, alarm.get_reason_display())

    # -- instance page -------------------------------------------------------------------------
    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> _FieldsetSpec:
        """Only what applies to this instance: no empty result row on a paused one."""
        if obj is None:
            return []
        state = as_state(obj.state)
        summary = ["id", "workflow", "state_badge"]
        if obj.held:
            summary.append("held_reason")
        if state == State.PAUSED:
            summary.append("pending_alarm")
        if state not in TERMINAL and _event_wait(obj) is not None:
            summary.append("waiting_for")
        if state not in TERMINAL and obj.inbox.filter(taken_at__isnull=True).exists():
            summary.append("inbox_display")
        if concurrency.queued_behind(obj) is not None:
            summary.append("concurrency_display")
        if obj.priority:
            summary.append("priority")
        if obj.start_at is not None:
            summary.append("start_at")
        if _rate_limited_text(obj):
            summary.append("rate_limit_display")
        if obj.deadline_at is not None:
            summary.append("deadline_at")
        if obj.parent_id:
            summary.append("parent_link")
        if obj.child_instances.exists():
            summary.append("children_links")
        if obj.forked_from:
            summary.append("forked_from_link")
        if obj.meta:
            summary.append("progress")
        summary += ["created_at", "started_at", "finished_at", "updated_at"]
        if obj.generation:
            summary += ["generation", "generation_started_at"]
        outcome = []
        if state == State.COMPLETED:
            outcome.append("result_display")
        if obj.error_type or obj.error_message:
            outcome.append("error_display")
        if state == State.CANCELLED or obj.cancel_requested:
            outcome.append("cancel_reason")
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (None, {"fields": summary}),
            ("Input", {"fields": ["input_display"]}),
        ]
        if outcome:
            fieldsets.append(("Outcome", {"fields": outcome}))
        fieldsets.append(("Execution", {
            "classes": ["collapse"],
            "fields": [
                "run_count", "last_mode", "epoch", "lease_owner", "lease_expires_at",
                "recovery_count", "cancel_requested", "dispatched_at",
            ],
        }))
        # The stubs' fieldset type is a TypedDict of invariant lists: plain lists of names
        # are what Django reads.
        return cast("_FieldsetSpec", fieldsets)

    @admin.display(description="pending alarm")
    def pending_alarm(self, obj: WorkflowInstance) -> str:
        alarm = _alarm(obj)
        if alarm is None:
            return "none"
        when = timezone.localtime(alarm.fire_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        return f"{alarm_text(alarm.fire_at, alarm.fired_at, alarm.get_reason_display())}, at {when}"

    @admin.display(description="concurrency")
    def concurrency_display(self, obj: WorkflowInstance) -> str:
        behind = concurrency.queued_behind(obj)
        return "" if behind is None else _queued_behind_text(obj, behind)

    @admin.display(description="rate limit")
    def rate_limit_display(self, obj: WorkflowInstance) -> str:
        return _rate_limited_text(obj)

    @admin.display(description="waiting for")
    def waiting_for(self, obj: WorkflowInstance) -> str:
        wait = _event_wait(obj)
        if wait is None:
            return ""
        if wait.wake_at is None:
            return f"event {wait.name!r}, without a timeout"
        until = timezone.localtime(wait.wake_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        return f"event {wait.name!r} until {until} ({relative(wait.wake_at)})"

    @admin.display(description="events received, not yet taken")
    def inbox_display(self, obj: WorkflowInstance) -> str:
        untaken = obj.inbox.filter(taken_at__isnull=True)
        waiting = list(untaken.order_by("id")[:INBOX_SHOWN + 1])
        rows = [
            format_html("<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                        m.name, timezone.localtime(m.received_at).strftime("%Y-%m-%d %H:%M:%S"),
                        m.event_id or "", capped(pretty(decode(m.payload)), INBOX_VALUE_CHARS)
                        if shown(obj) else PLACEHOLDER)
            for m in waiting[:INBOX_SHOWN]
        ]
        if not rows:
            return ""
        header = mark_safe("<tr><th>name</th><th>received</th><th>event id</th><th>payload</th></tr>")
        table = format_html('<table class="dw-inbox">{}{}</table>', header,
                            format_html_join("", "{}", ((r,) for r in rows)))
        if len(waiting) <= INBOX_SHOWN:
            return table
        return format_html('{}<p class="dw-note">Showing the oldest {} of {} events received.</p>',
                           table, INBOX_SHOWN, untaken.count())

    @admin.display(description="parent")
    def parent_link(self, obj: WorkflowInstance) -> str:
        if not obj.parent_id:
            return ""
        return format_html('<a href="{}">{}</a>', self._change_url(obj.parent_id), obj.parent_id)

    @admin.display(description="forked from")
    def forked_from_link(self, obj: WorkflowInstance) -> str:
        if not obj.forked_from:
            return ""
        return format_html('<a href="{}">{}</a>', self._change_url(obj.forked_from), obj.forked_from)

    @admin.display(description="children")
    def children_links(self, obj: WorkflowInstance) -> str:
        children = obj.child_instances.order_by("created_at", "parent_position", "pk")
        rows = list(children.values_list("pk", "workflow", "state")[:CHILDREN_SHOWN + 1])
        links = format_html_join(
            mark_safe("<br>"), '<a href="{}">{}</a> {} {}',
            ((self._change_url(pk), pk, workflow, state_badge(state)) for pk, workflow, state in rows[:CHILDREN_SHOWN]),
        )
        if len(rows) <= CHILDREN_SHOWN:
            return links
        listing = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
                          current_app=self.admin_site.name)
        query = urlencode({"parent__id__exact": obj.pk})
        return format_html('{}<br><a href="{}?{}">all {} children</a> (the first {} are shown)',
                           links, listing, query, children.count(), CHILDREN_SHOWN)

    def _change_url(self, instance_id: str) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                       args=[quote(instance_id)], current_app=self.admin_site.name)

    @admin.display(description="progress")
    def progress(self, obj: WorkflowInstance) -> str:
        if not obj.meta:
            return ""
        return pretty(obj.meta) if shown(obj) else PLACEHOLDER

    @admin.display(description="input")
    def input_display(self, obj: WorkflowInstance) -> str:
        text = capped(pretty_input(obj.input)) if shown(obj) else PLACEHOLDER
        return format_html('<pre class="dw-value">{}</pre>', text)

    @admin.display(description="result")
    def result_display(self, obj: WorkflowInstance) -> str:
        if as_state(obj.state) != State.COMPLETED:
            return ""
        text = capped(pretty(decode(obj.result))) if shown(obj) else PLACEHOLDER
        return format_html('<pre class="dw-value">{}</pre>', text)

    @admin.display(description="error")
    def error_display(self, obj: WorkflowInstance) -> str:
        error = obj.error
        if error is None:
            return ""
        return format_html(
            '<div class="dw-error"><strong>{}</strong>: {}</div>'
            '<details class="dw-traceback" open><summary>Traceback</summary><pre>{}</pre></details>',
            error["type"], error["message"], error["traceback"] or "(no traceback recorded)",
        )

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Any = None) -> HttpResponse:
        if obj is not None:
            steps, step_total, chart, charted = timeline.step_rows(obj)
            events, event_total = timeline.event_rows(obj)
            context.update({
                "dw_steps": steps,
                "dw_step_total": step_total,
                "dw_timeline": chart,
                "dw_charted": charted,
                "dw_events": events,
                "dw_event_total": event_total,
                "dw_can_cancel": operations.can_cancel(obj) and self.has_cancel_permission(request),
                "dw_can_resume": operations.can_resume(obj) and self.has_resume_permission(request),
                "dw_can_pause": operations.can_cancel(obj) and not obj.held and self.has_cancel_permission(request),
                "dw_can_release": obj.held and self.has_cancel_permission(request),
                "dw_can_recover": obj.is_stale() and self.has_resume_permission(request),
                "dw_can_fork": as_state(obj.state) in (State.FAILED, State.CANCELLED)
                and self.has_resume_permission(request),
                "dw_urls": {
                    name: self._operation_url(obj, name)
                    for name in ("cancel", "pause", "release", "resume", "recover", "fork")
                },
            })
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- instance page operations --------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_view), name=f"{prefix}_dashboard"),
            path("<path:object_id>/cancel/", view(self.cancel_view), name=f"{prefix}_cancel"),
            path("<path:object_id>/resume/", view(self.resume_view), name=f"{prefix}_resume"),
            path("<path:object_id>/pause/", view(self.pause_view), name=f"{prefix}_pause"),
            path("<path:object_id>/release/", view(self.release_view), name=f"{prefix}_release"),
            path("<path:object_id>/recover/", view(self.recover_view), name=f"{prefix}_recover"),
            path("<path:object_id>/fork/", view(self.fork_view), name=f"{prefix}_fork"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "title": "Dashboard", "opts": self.opts,
                   **dashboard.context()}
        return TemplateResponse(request, "admin/durable_workflows/workflowinstance/dashboard.html", context)

    def _operation_url(self, obj: WorkflowInstance, name: str) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}",
            args=[quote(obj.pk)], current_app=self.admin_site.name,
        )

    def _run_operation(self, request: HttpRequest, object_id: str, allowed: bool, operation: Any) -> HttpResponse:
        instance_id = unquote(object_id)
        if not allowed:
            raise PermissionDenied
        try:
            self.message_user(request, operation(instance_id), messages.SUCCESS)
        except WorkflowNotFound as error:
            self.message_user(request, str(error), messages.WARNING)
            return self._changelist_redirect()
        except (operations.Refused, InvalidTransition) as error:
            self.message_user(request, str(error), messages.WARNING)
        return HttpResponseRedirect(reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[quote(instance_id)], current_app=self.admin_site.name,
        ))

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return _post_only(request) or self._run_operation(
            request, object_id, self.has_cancel_permission(request),
            lambda i: operations.cancel(i, request.POST.get("reason", "").strip()
                                        or actions.cancel_reason(request)),
        )

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        reason = request.POST.get("reason", "").strip() or actions.pause_reason(request)
        return _post_only(request) or self._run_operation(
            request, object_id, self.has_cancel_permission(request), lambda i: operations.pause(i, reason))

    def release_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Ends an operator's hold (the "Resume" button; "Resume now" fires an alarm)."""
        return _post_only(request) or self._run_operation(
            request, object_id, self.has_cancel_permission(request), operations.release)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The page's button sends the epoch it was drawn at: resumed since, it says so."""
        seen = request.POST.get("epoch", "")
        seen_epoch = int(seen) if seen.isdigit() else None
        return _post_only(request) or self._run_operation(
            request, object_id, self.has_resume_permission(request),
            lambda i: operations.resume_now(i, seen_epoch),
        )

    def fork_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Forks the instance and opens the fork's page."""
        refused = _post_only(request)
        if refused is not None:
            return refused
        if not self.has_resume_permission(request):
            raise PermissionDenied
        instance_id = unquote(object_id)
        try:
            handle = client.fork(instance_id)
        except WorkflowNotFound as error:
            self.message_user(request, str(error), messages.WARNING)
            return self._changelist_redirect()
        except (UnknownWorkflow, TypeError, ValueError) as error:
            self.message_user(request, f"Not forked: {error}", messages.WARNING)
            return self._change_redirect(instance_id)
        self.message_user(request, f"Forked {instance_id} as {handle.instance_id}; it is "
                                   f"{handle.refresh().state.label} now.", messages.SUCCESS)
        return self._change_redirect(handle.instance_id)

    def _changelist_redirect(self) -> HttpResponse:
        return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
                                            current_app=self.admin_site.name))

    def _change_redirect(self, instance_id: str) -> HttpResponse:
        return HttpResponseRedirect(reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[quote(instance_id)], current_app=self.admin_site.name,
        ))

    def recover_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return _post_only(request) or self._run_operation(
            request, object_id, self.has_resume_permission(request), operations.recover
        )


def _post_only(request: HttpRequest) -> HttpResponse | None:
    """Operations change state, so a link or a prefetch (GET) must never trigger one."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return None


INBOX_SHOWN = 50
INBOX_VALUE_CHARS = 2_000
CHILDREN_SHOWN = 200
_NOT_READ = object()


def _event_wait(obj: WorkflowInstance) -> StepRecord | None:
    return obj.steps.filter(kind=StepKind.EVENT, state=StepState.AWAITING).order_by("-id").first()


def _alarm(obj: WorkflowInstance) -> Any:
    try:
        return obj.alarm
    except WorkflowInstance.alarm.RelatedObjectDoesNotExist:
        return None


def _rate_limited_text(obj: WorkflowInstance) -> str:
    """"rate-limited until 14:05:09 (10/m per "acme")" for a Queued instance its workflow's
    rate limit holds back (its alarm, read with the row on the change list)."""
    alarm = _alarm(obj)
    if alarm is None or alarm.reason != AlarmReason.RATE or as_state(obj.state) != State.QUEUED:
        return ""
    definition = registered(obj.workflow)
    rate = definition.rate_limit if definition is not None else None
    per = f" per {obj.rate_key}" if obj.rate_key else ""
    about = f" ({rate}{per})" if rate is not None else ""
    return f"rate-limited until {timezone.localtime(alarm.fire_at):%Y-%m-%d %H:%M:%S}{about}"


def _queued_behind_text(obj: WorkflowInstance, behind: int) -> str:
    """"queued behind 4 (concurrency 2 per "acme")": what it waits for, in the operator's words."""
    try:
        limit = get_definition(obj.workflow).concurrency
    except UnknownWorkflow:
        limit = None
    if not limit:
        return f"queued behind {behind}"
    per = f" per {obj.concurrency_key}" if obj.concurrency_key else ""
    return f"queued behind {behind} (concurrency {limit}{per})"


def state_counts() -> dict[State, counting.Count]:
    """Instances per state, each exact up to counting.EXACT_UP_TO and estimated past it (an
    index range each: no scan of the whole table on every page view)."""
    return dict(zip(State, counting.count_each([WorkflowInstance.objects.filter(state=state) for state in State]), strict=True))
