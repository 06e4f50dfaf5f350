"""The API views: thin glue that validates a request, calls the client and renders the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from .. import __version__, bulk, client, filters
from ..engine.instances import findable
from ..exceptions import (
    InvalidTransition,
    SerializationError,
    UnknownWorkflow,
    WorkflowIdConflict,
    WorkflowNotFound,
)
from ..models import WorkflowInstance
from ..nesting import MAX_NESTING, TooDeep, check_nesting
from ..registry import all_definitions
from ..states import State
from .pagination import InstancePagination
from .permissions import READ, configured_permissions
from .serializers import (
    VALIDATION_ERROR_SCHEMA,
    AcceptedSerializer,
    BulkResultSerializer,
    BulkSerializer,
    CancelSerializer,
    ConflictSerializer,
    DefinitionSerializer,
    DetailSerializer,
    ForkSerializer,
    InstanceDetailSerializer,
    InstanceSerializer,
    PauseSerializer,
    ResumeSerializer,
    SendEventSerializer,
    StartSerializer,
    options,
)

DENIED = {
    401: OpenApiResponse(DetailSerializer, description="Not authenticated."),
    403: OpenApiResponse(DetailSerializer, description="Not allowed (by default: not a staff user, or "
                         "without the workflow instance permission this needs)."),
}
BAD_REQUEST = OpenApiResponse(VALIDATION_ERROR_SCHEMA, description="Invalid input; messages by field.")
NOT_FOUND = OpenApiResponse(DetailSerializer, description="No instance has that id.")
FINISHED = OpenApiResponse(ConflictSerializer, description="It has already finished.")
NOT_JSON = OpenApiResponse(
    DetailSerializer, description="The body is neither JSON nor form data (the documented body is JSON)."
)
INSTANCE_ID = OpenApiParameter(
    "instance_id", OpenApiTypes.STR, OpenApiParameter.PATH,
    description="The instance id: free text, slashes included (percent-encoded or not).",
)


def documented(**kwargs: Any) -> Any:
    """`extend_schema` built on drf-spectacular's AutoSchema even in a project whose
    DEFAULT_SCHEMA_CLASS is DRF's own (which cannot generate this schema)."""

    def decorate(method: Any) -> Any:
        method.schema = AutoSchema
        return extend_schema(**kwargs)(method)

    return decorate


def documented_operation(operation_id: str, summary: str, description: str, body: Any,
                         responses: dict[int, Any]) -> Any:
    """`documented` for a POST to one instance's operation: its id in the path, a JSON body,
    and the answers every operation shares (a bad body, no such instance, not JSON, denied)
    beside its own."""
    return documented(
        operation_id=operation_id, summary=summary, description=description, parameters=[INSTANCE_ID],
        request={"application/json": body},
        responses={**responses, 400: BAD_REQUEST, 404: NOT_FOUND, 415: NOT_JSON, **DENIED},
    )


class NestingJSONParser(JSONParser):
    """DRF's JSON parser, with JSON nested too deeply (nesting.py) answered 400 like any
    other body it cannot read, never 500, whatever the Python."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return check_nesting(super().parse(stream, media_type, parser_context))
        except (RecursionError, TooDeep):
            raise ParseError(f"JSON parse error - nested too deeply (at most {MAX_NESTING} levels)") from None


class WorkflowAPIView(GenericAPIView):
    """What every endpoint shares: JSON in and out, and the configured permission classes.

    Bodies are documented as JSON, the only form in which a start's `input` object can be
    sent; form data is accepted too, as by DRF's own defaults, so that a cancel's `reason`
    can come from an HTML form or a test client's default encoding.
    """

    schema = AutoSchema()
    parser_classes = [NestingJSONParser, FormParser, MultiPartParser]
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]

    def get_permissions(self) -> list[BasePermission]:
        return configured_permissions()


def _find(instance_id: str) -> WorkflowInstance | None:
    if not findable(instance_id):
        return None
    return WorkflowInstance.objects.filter(pk=instance_id).first()


def _not_found(instance_id: str, hint: str = "") -> Response:
    return Response({"detail": f"No workflow instance with id {instance_id!r}{hint}."},
                    status=status.HTTP_404_NOT_FOUND)


def instance_operation(request: Request, instance_id: str, body_class: Any,
                       operation: Callable[[dict[str, Any]], Response]) -> Response:
    """What every operation on one instance shares: 404 for an unknown id, the body checked
    (400), and 409 when the state machine refuses it."""
    if _find(instance_id) is None:
        return _not_found(instance_id)
    body = body_class(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        return operation(body.validated_data)
    except WorkflowNotFound:
        return _not_found(instance_id)
    except InvalidTransition as exc:
        return _conflict(instance_id, exc)


def _conflict(instance_id: str, error: InvalidTransition) -> Response:
    current = WorkflowInstance.objects.filter(pk=instance_id).values_list("state", flat=True).first()
    if current is None:
        return _not_found(instance_id)
    return Response({"detail": str(error), "state": current}, status=status.HTTP_409_CONFLICT)


LIST_PARAMETERS = [
    OpenApiParameter("state", {"type": "array", "items": {"type": "string", "enum": [s.value for s in State]}},
                     explode=True, description="Only these states: repeat it for several "
                     "(`?state=failed&state=cancelled`), or separate them with commas."),
    OpenApiParameter("workflow", OpenApiTypes.STR, description="Only this workflow."),
    OpenApiParameter("parent", OpenApiTypes.STR, description="Only the children of this instance."),
    OpenApiParameter("forked_from", OpenApiTypes.STR, description="Only the forks of this instance."),
    OpenApiParameter("id_prefix", OpenApiTypes.STR, description="Only ids that start with this."),
    *(OpenApiParameter(name, OpenApiTypes.DATETIME, description=f"Only instances {name.split('_')[0]} strictly "
                       f"{name.split('_')[1]} this time (ISO 8601 with an offset, e.g. 2026-01-31T12:00:00Z).")
      for name in filters.MOMENTS),
]


class InstanceListView(WorkflowAPIView):
    """Instances, newest first, filtered by the instance filters (filters.py); POST starts one."""

    serializer_class = InstanceSerializer
    pagination_class = InstancePagination
    permission_actions = {"GET": READ, "POST": ("add",)}

    def get_queryset(self) -> Any:
        return WorkflowInstance.objects.order_by("-created_at", "-pk")

    @documented(
        operation_id="workflow_instances_list",
        summary="List instances, newest first",
        parameters=LIST_PARAMETERS,
        responses={
            200: InstanceSerializer(many=True), 400: BAD_REQUEST,
            404: OpenApiResponse(DetailSerializer, description="No such page, or a `cursor` this list did not give."),
            **DENIED,
        },
    )
    def get(self, request: Request) -> Response:
        try:
            given = filters.from_text({name: request.query_params.getlist(name)
                                       for name in filters.NAMES if name in request.query_params})
        except filters.FilterError as exc:
            return Response({exc.name: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        queryset = self.get_queryset()
        if given:
            queryset = queryset.filter(filters.condition(given))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(InstanceSerializer(page, many=True, context={"request": request}).data)

    @documented(
        operation_id="workflow_instances_start",
        summary="Start an instance",
        description="Idempotent with `instance_id`: starting the same id again returns the "
        "existing instance with 200 and runs nothing.",
        request={"application/json": StartSerializer},
        responses={
            201: OpenApiResponse(InstanceDetailSerializer, description="Started."),
            200: OpenApiResponse(InstanceDetailSerializer, description="That instance_id already existed."),
            400: BAD_REQUEST,
            409: OpenApiResponse(ConflictSerializer, description="That instance_id belongs to another workflow."),
            415: NOT_JSON,
            **DENIED,
        },
    )
    def post(self, request: Request) -> Response:
        body = StartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        definition = body.validated_data["workflow"]
        instance_id = body.validated_data.get("instance_id")
        args, kwargs = body.validated_data["args"], body.validated_data["kwargs"]
        try:
            handle = client.start_with(definition, args, kwargs, instance_id, **options(body.validated_data))
        except WorkflowIdConflict as exc:
            state = WorkflowInstance.objects.filter(pk=instance_id).values_list("state", flat=True).first()
            return Response({"detail": f"{exc}.", "state": state}, status=status.HTTP_409_CONFLICT)
        except TypeError as exc:
            return Response({"input": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        code = status.HTTP_201_CREATED if handle.created else status.HTTP_200_OK
        handle.refresh()
        return Response(InstanceDetailSerializer(handle.instance, context={"request": request}).data, status=code)


class InstanceDetailView(WorkflowAPIView):
    """One instance with its steps in run order and its pending alarm."""

    serializer_class = InstanceDetailSerializer

    @documented(
        operation_id="workflow_instances_retrieve",
        summary="One instance, with its steps",
        parameters=[INSTANCE_ID],
        responses={200: InstanceDetailSerializer, 404: NOT_FOUND, **DENIED},
    )
    def get(self, request: Request, instance_id: str) -> Response:
        return _detail(request, instance_id)


def _detail(request: Request, instance_id: str, hint: str = "") -> Response:
    instance = _find(instance_id)
    if instance is None:
        return _not_found(instance_id, hint)
    return Response(InstanceDetailSerializer(instance, context={"request": request}).data)


class InstanceOperationView(WorkflowAPIView):
    """An operation on one instance, at `instances/<id>/<operation>/`.

    Ids are free text, so `abc/cancel` is an id like any other. The operations take POST
    only, which tells the two apart: POST `abc/cancel/` cancels `abc`, and GET `abc/cancel/`
    reads the instance whose id is `abc/cancel`, as GET of any other `<id>/` does.
    """

    operation = ""

    @documented(exclude=True)
    def get(self, request: Request, instance_id: str) -> Response:
        return _detail(request, f"{instance_id}/{self.operation}",
                       f" ({self.operation}/ of {instance_id!r} takes POST)")


class InstanceCancelView(InstanceOperationView):
    """Cancels through the state machine; a finished instance answers 409."""

    serializer_class = CancelSerializer
    operation = "cancel"
    # The admin's cancel permission, kept for the users who were given it.
    permission_actions = {"POST": ("change", "cancel")}

    @documented_operation(
        "workflow_instances_cancel", "Cancel an instance",
        "Queued and Paused instances are cancelled at once; a Running one at its next step boundary "
        "(`cancel_requested` is true until then).",
        CancelSerializer, {200: InstanceDetailSerializer, 409: FINISHED},
    )
    def post(self, request: Request, instance_id: str) -> Response:
        def cancel(data: dict[str, Any]) -> Response:
            handle = client.cancel(instance_id, reason=data["reason"])
            return Response(InstanceDetailSerializer(handle.instance, context={"request": request}).data)

        return instance_operation(request, instance_id, CancelSerializer, cancel)


class InstancePauseView(InstanceOperationView):
    """Holds an instance (client.pause); a finished instance answers 409."""

    serializer_class = PauseSerializer
    operation = "pause"
    # Holding and releasing an instance are the operator's controls cancel is.
    permission_actions = {"POST": ("change", "cancel")}

    @documented_operation(
        "workflow_instances_pause", "Pause (hold) an instance",
        "Nothing starts or resumes a held instance until it is resumed: a Queued one stays Queued, a Paused "
        "one Paused, and a Running one finishes the step it runs and stops, Paused, before its next step. "
        "`held` is true until then; pausing a held instance again replaces `held_reason`.",
        PauseSerializer, {200: InstanceDetailSerializer, 409: FINISHED},
    )
    def post(self, request: Request, instance_id: str) -> Response:
        return instance_operation(request, instance_id, PauseSerializer, lambda data: _answer(
            client.pause(instance_id, reason=data["reason"])))


class InstanceResumeView(InstanceOperationView):
    """Ends the hold of an instance (client.resume), and runs it if something came due meanwhile."""

    serializer_class = ResumeSerializer
    operation = "resume"
    permission_actions = {"POST": ("change", "cancel")}

    @documented_operation(
        "workflow_instances_resume", "Resume a paused (held) instance",
        "Ends the hold and runs the instance at once if something became due while it was held (an alarm, "
        "an event, a child that finished, a start). An instance that is not held is left as it is (200).",
        ResumeSerializer, {200: InstanceDetailSerializer},
    )
    def post(self, request: Request, instance_id: str) -> Response:
        return instance_operation(request, instance_id, ResumeSerializer,
                                  lambda data: _answer(client.resume(instance_id)))


def _answer(handle: client.WorkflowHandle) -> Response:
    return Response(InstanceDetailSerializer(handle.instance).data)


class InstanceEventsView(InstanceOperationView):
    """Sends an event to an instance: what its `wf.wait_for_event` of that name takes."""

    serializer_class = SendEventSerializer
    operation = "events"

    @documented_operation(
        "workflow_instances_send_event", "Send an event to an instance",
        "Stored until a wait of that name takes it (first in, first out), and the instance resumed if it "
        "waits for it now. With `event_id`, a repeat (a redelivered webhook) changes nothing and answers 200.",
        SendEventSerializer,
        {202: OpenApiResponse(AcceptedSerializer, description="Stored."),
         200: OpenApiResponse(AcceptedSerializer, description="That event_id was already received."),
         409: FINISHED},
    )
    def post(self, request: Request, instance_id: str) -> Response:
        def send(data: dict[str, Any]) -> Response:
            try:
                accepted = client.send_event(instance_id, data["name"], data["payload"], event_id=data["event_id"])
            except SerializationError as exc:
                return Response({"payload": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
            except ValueError as exc:
                field = "event_id" if str(exc).startswith("event_id") else "name"
                return Response({field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
            code = status.HTTP_202_ACCEPTED if accepted else status.HTTP_200_OK
            return Response({"accepted": accepted}, status=code)

        return instance_operation(request, instance_id, SendEventSerializer, send)


class InstanceForkView(InstanceOperationView):
    """Forks an instance (client.fork): a new one that replays its records before a position
    and runs the rest under the code deployed now."""

    serializer_class = ForkSerializer
    operation = "fork"

    @documented_operation(
        "workflow_instances_fork", "Fork an instance",
        "For repairing a Failed instance once the fix is deployed: the new instance replays the original's "
        "records before `from_position` (their steps do not run again) and runs the rest. The original stays "
        "as it is.",
        ForkSerializer,
        {201: OpenApiResponse(InstanceDetailSerializer, description="Forked."),
         409: OpenApiResponse(ConflictSerializer, description="An instance with that new_id exists, the "
                              "instance is not finished (cancel it first), or the code deployed now cannot run "
                              "the instance (its workflow is gone, or takes other arguments).")},
    )
    def post(self, request: Request, instance_id: str) -> Response:
        def fork(data: dict[str, Any]) -> Response:
            try:
                handle = client.fork(instance_id, from_position=data["from_position"], new_id=data["new_id"])
            except WorkflowIdConflict as exc:
                state = WorkflowInstance.objects.filter(pk=data["new_id"]).values_list("state", flat=True).first()
                return Response({"detail": f"{exc}.", "state": state}, status=status.HTTP_409_CONFLICT)
            except (UnknownWorkflow, TypeError) as exc:  # the code deployed now cannot run it
                return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
            except ValueError as exc:
                field = "from_position" if str(exc).startswith("from_position") else "new_id"
                return Response({field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
            handle.refresh()
            return Response(InstanceDetailSerializer(handle.instance, context={"request": request}).data, status=status.HTTP_201_CREATED)

        return instance_operation(request, instance_id, ForkSerializer, fork)


class InstanceBulkView(WorkflowAPIView):
    """One action on every instance a filter selects (client.bulk), at `instances/bulk/`.

    POST only: GET `instances/bulk/` reads the instance whose id is "bulk", as for any id."""

    serializer_class = BulkSerializer

    def permission_actions_of(self, request: Request) -> tuple[str, ...]:
        """As for the action on one instance: cancel also with the cancel permission."""
        data = request.data
        return ("change", "cancel") if isinstance(data, dict) and data.get("action") == "cancel" else ("change",)

    @documented(exclude=True)
    def get(self, request: Request) -> Response:
        return _detail(request, "bulk")

    @documented(
        operation_id="workflow_instances_bulk",
        summary="Act on every instance a filter selects",
        description="Cancels or forks every instance that matches the filter (the instance list's filters, at "
        "least one), a chunk at a time. Instances that cannot take the action (a finished one for cancel, an "
        "unfinished one for fork) are skipped. Answers how many took it; a bad action or filter changes nothing.",
        request={"application/json": BulkSerializer},
        responses={200: BulkResultSerializer, 400: BAD_REQUEST, 415: NOT_JSON, **DENIED},
    )
    def post(self, request: Request) -> Response:
        body = BulkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        action = body.validated_data["action"]
        try:
            given = filters.from_data(body.validated_data["filter"])
            count = bulk.run(action, given, body.validated_data["reason"])
        except ValueError as exc:
            message = exc.named if isinstance(exc, filters.FilterError) else str(exc)
            return Response({"filter": [message]}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"action": action, "count": count})


class DefinitionListView(WorkflowAPIView):
    """The registered workflows and the arguments each takes."""

    serializer_class = DefinitionSerializer

    @documented(
        operation_id="workflow_definitions_list",
        summary="Registered workflows",
        responses={200: DefinitionSerializer(many=True), **DENIED},
    )
    def get(self, request: Request) -> Response:
        return Response(DefinitionSerializer(all_definitions(), many=True).data)


def only_workflow_endpoints(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """drf-spectacular hook: describe this API only, whatever else the project mounts."""
    return [e for e in endpoints if getattr(e[3], "cls", None) in API_VIEWS]


API_VIEWS = (InstanceListView, InstanceDetailView, InstanceCancelView, InstancePauseView, InstanceResumeView,
             InstanceEventsView, InstanceForkView, InstanceBulkView, DefinitionListView)


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 document of this API, guarded like the API itself.

    JSON by default, like the rest of the API; YAML with `?format=yaml` or by `Accept`.
    """

    renderer_classes = [JSONRenderer, *SpectacularAPIView.renderer_classes]

    custom_settings = {
        "TITLE": "Durable workflows API",
        "DESCRIPTION": "List, start, inspect, pause, resume and cancel durable workflow instances.",
        "VERSION": __version__,
        "PREPROCESSING_HOOKS": ["durable_workflows.api.views.only_workflow_endpoints"],
        "ENUM_NAME_OVERRIDES": {
            "InstanceStateEnum": "durable_workflows.states.State",
            "StepStateEnum": "durable_workflows.models.StepState",
            "StepKindEnum": "durable_workflows.models.StepKind",
            "AlarmReasonEnum": "durable_workflows.models.AlarmReason",
        },
    }

    def get_permissions(self) -> list[BasePermission]:
        return configured_permissions()
