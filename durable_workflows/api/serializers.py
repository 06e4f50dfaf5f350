"""What goes over the wire: instance, step and definition JSON, the start and cancel bodies,
and the error bodies (described here too, so the OpenAPI schema documents every response)."""

from __future__ import annotations

import base64
import datetime as dt
import inspect
import uuid
from decimal import Decimal
from typing import Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import serialization
from ..engine.schedules import next_fire
from ..exceptions import SerializationError, UnknownWorkflow
from ..models import Alarm, StepRecord, WorkflowInstance
from ..registry import WorkflowDefinition, get_definition
from ..serialization import decode_input
from ..states import State, as_state

INPUT_SCHEMA = {
    "oneOf": [
        {"type": "object", "additionalProperties": True, "description": "Keyword arguments."},
        {"type": "array", "items": {}, "description": "Positional arguments."},
    ],
}
ERROR_INFO_FIELDS = ("type", "message", "traceback")


def plain(value: Any) -> Any:
    """A JSON-ready copy of a stored value.

    The serializer restores datetimes, Decimals, tuples and sets for the workflow's sake; an
    HTTP client gets their usual JSON spelling instead (ISO text, decimal text, arrays).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item) for item in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def stored(text: str | None) -> Any:
    try:
        return plain(serialization.loads(text))
    except (TypeError, ValueError):
        return text


def input_json(instance: WorkflowInstance) -> Any:
    """The input as it was given to `start`: an object of keyword arguments or an array of
    positional ones; `{"args": [...], "kwargs": {...}}` when a client passed both."""
    try:
        args, kwargs = decode_input(instance.input)
    except (TypeError, ValueError, AttributeError):
        return instance.input
    if args and kwargs:
        return {"args": plain(args), "kwargs": plain(kwargs)}
    if args:
        return plain(args)
    return plain(kwargs)


class ErrorInfoSerializer(serializers.Serializer):
    type = serializers.CharField(allow_blank=True, help_text="The exception class name.")
    message = serializers.CharField(allow_blank=True)
    traceback = serializers.CharField(allow_blank=True)


class OutcomeSerializer(serializers.Serializer):
    """What a step record and an instance ended with: the stored result as JSON, and the
    error fields as one object."""

    result = serializers.SerializerMethodField(help_text="The return value once completed, else null.")
    error = serializers.SerializerMethodField(
        help_text="The failure (a step's: its last attempt's, even while it retries), else null.")

    @extend_schema_field(OpenApiTypes.ANY)
    def get_result(self, row: StepRecord | WorkflowInstance) -> Any:
        return stored(row.result)

    @extend_schema_field(ErrorInfoSerializer(allow_null=True))
    def get_error(self, row: StepRecord | WorkflowInstance) -> dict[str, str] | None:
        return row.error


class StepSerializer(OutcomeSerializer, serializers.ModelSerializer):
    duration = serializers.SerializerMethodField(help_text="Seconds from the first attempt to the end.")

    class Meta:
        model = StepRecord
        fields = [
            "position", "branch", "name", "kind", "state", "attempts", "result", "error",
            "started_at", "finished_at", "wake_at", "duration",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration(self, record: StepRecord) -> float | None:
        duration = record.duration
        return None if duration is None else duration.total_seconds()


class AlarmSerializer(serializers.ModelSerializer):
    class Meta:
        model = Alarm
        fields = ["fire_at", "reason", "fired_at"]
        read_only_fields = fields


class InstanceSerializer(OutcomeSerializer, serializers.ModelSerializer):
    state = serializers.ChoiceField(choices=State.choices, help_text="Lower case.")
    input = serializers.SerializerMethodField()
    meta = serializers.SerializerMethodField(help_text="What the workflow published with wf.set_meta().")

    class Meta:
        model = WorkflowInstance
        fields = [
            "id", "workflow", "state", "input", "result", "error", "meta", "generation",
            "cancel_requested", "cancel_reason",
            "created_at", "started_at", "updated_at", "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field({**INPUT_SCHEMA, "description": "The arguments it was started with."})
    def get_input(self, instance: WorkflowInstance) -> Any:
        return input_json(instance)

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_meta(self, instance: WorkflowInstance) -> dict[str, Any]:
        return dict(instance.meta or {})


class InstanceDetailSerializer(InstanceSerializer):
    steps = serializers.SerializerMethodField(help_text="Steps and sleeps in run order.")
    alarm = serializers.SerializerMethodField(help_text="When a Paused instance resumes, else null.")
    # DRF's metaclass takes declared fields off the class, so this does not replace
    # Field.parent at run time; the stubs cannot express that.
    parent = serializers.CharField(  # type: ignore[assignment]
        source="parent_id", allow_null=True, read_only=True,
        help_text="The instance that started this one with wf.start_child(), else null.",
    )
    children = serializers.SerializerMethodField(help_text="Ids of the children it started, in start order.")
    deadline_at = serializers.DateTimeField(
        allow_null=True, read_only=True, help_text="From the workflow's timeout, else null.")
    forked_from = serializers.CharField(
        allow_null=True, read_only=True, help_text="The instance this one was forked from, else null.")

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "run_count", "recovery_count", "deadline_at",
                  "parent", "children", "forked_from", "alarm", "steps"]
        read_only_fields = fields

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_children(self, instance: WorkflowInstance) -> list[str]:
        return instance.child_ids()

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, instance: WorkflowInstance) -> list[dict[str, Any]]:
        records = sorted(StepRecord.objects.filter(instance_id=instance.pk), key=lambda r: r.sort_key)
        # many=True makes a ListSerializer, whose data is a list; the stubs type it as one record's.
        return cast("list[dict[str, Any]]", StepSerializer(records, many=True).data)

    @extend_schema_field(AlarmSerializer(allow_null=True))
    def get_alarm(self, instance: WorkflowInstance) -> dict[str, Any] | None:
        alarm = Alarm.objects.filter(instance_id=instance.pk).first()
        return None if alarm is None else AlarmSerializer(alarm).data


@extend_schema_field(INPUT_SCHEMA)
class InputField(serializers.Field):
    """A JSON object (keyword arguments) or array (positional arguments); nothing else."""

    default_error_messages = {
        "invalid": "input must be a JSON object (keyword arguments) or an array "
        "(positional arguments), not {kind}.",
        "null": "input must be a JSON object (keyword arguments) or an array "
        "(positional arguments), not null.",
    }

    def to_internal_value(self, data: Any) -> tuple[list[Any], dict[str, Any]]:
        if isinstance(data, dict):
            return [], data
        if isinstance(data, list):
            return data, {}
        kind = "null" if data is None else type(data).__name__
        self.fail("invalid", kind={"str": "text", "bool": "a boolean"}.get(kind, kind))

    def to_representation(self, value: Any) -> Any:
        return value


class ExactCharField(serializers.CharField):
    """Text taken exactly as given: not trimmed, and a number is not quietly turned into text
    (an id of 12 and one of "12" would otherwise be the same instance)."""

    default_error_messages = {"not_text": "Must be text, not {kind}."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_text", kind=type(data).__name__)
        return super().to_internal_value(data)


class StartSerializer(serializers.Serializer):
    workflow = ExactCharField(max_length=255, help_text="A registered workflow name (see definitions/).")
    input = InputField(
        required=False,
        help_text="Keyword arguments as an object, or positional arguments as an array.",
    )
    instance_id = ExactCharField(
        max_length=255, required=False, allow_null=True,
        help_text="Makes the start idempotent: the same id returns the existing instance.",
    )

    def validate_workflow(self, value: str) -> WorkflowDefinition:
        try:
            return get_definition(value)
        except UnknownWorkflow as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_instance_id(self, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise serializers.ValidationError("instance_id must not be blank.")
        return value

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        definition: WorkflowDefinition = data["workflow"]
        args, kwargs = data.get("input", ([], {}))
        try:
            definition.check_arguments(tuple(args), kwargs)
        except TypeError as exc:
            # A repeat is answered with the instance it started, whatever its input now: as
            # client.start() and the command answer it.
            instance_id = data.get("instance_id")
            if instance_id is None or not WorkflowInstance.objects.filter(
                    pk=instance_id, workflow=definition.name).exists():
                raise serializers.ValidationError({"input": [str(exc)]}) from None
        try:
            serialization.dumps({"args": args, "kwargs": kwargs}, "the workflow input")
        except SerializationError as exc:
            raise serializers.ValidationError({"input": [str(exc)]}) from None
        data["args"], data["kwargs"] = list(args), dict(kwargs)
        return data


class CancelSerializer(serializers.Serializer):
    reason = ExactCharField(
        required=False, allow_blank=True, default="", max_length=10_000,
        help_text="Kept on the instance and sent with the workflow.cancelled event.",
    )


class SendEventSerializer(serializers.Serializer):
    name = ExactCharField(max_length=255, help_text="The event name a `wf.wait_for_event` waits for.")
    payload = serializers.JSONField(
        required=False, allow_null=True, default=None,
        help_text="Any JSON value; the wait returns it.",
    )
    event_id = ExactCharField(
        max_length=255, required=False, allow_null=True, default=None,
        help_text="The sender's key for this event: the same key again for this instance is ignored "
        "(200, accepted false). Use the webhook's delivery id.",
    )

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("The event name must not be blank.")
        return value

    def validate_event_id(self, value: str | None) -> str | None:
        if value is not None and not value:
            raise serializers.ValidationError("event_id must not be empty.")
        return value


class ForkSerializer(serializers.Serializer):
    from_position = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0,
        help_text="Copy the records before this position of the workflow function; by default, "
        "those before its first failed or unfinished one.",
    )
    new_id = ExactCharField(
        max_length=255, required=False, allow_null=True, default=None,
        help_text="The new instance's id; by default a new random one.",
    )


class AcceptedSerializer(serializers.Serializer):
    accepted = serializers.BooleanField(help_text="False when this instance already had that event_id.")


class InstanceFilterSerializer(serializers.Serializer):
    state = serializers.CharField(required=False, help_text="One state, lower case.")
    workflow = serializers.CharField(required=False, max_length=255, help_text="A workflow name.")

    def validate_state(self, value: str) -> State:
        try:
            return as_state(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class ParameterSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=["positional_only", "positional_or_keyword", "var_positional", "keyword_only", "var_keyword"]
    )
    required = serializers.BooleanField()  # type: ignore[assignment]  # as `parent` above


class DefinitionSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="What `workflow` takes in a start body.")
    module = serializers.CharField()
    description = serializers.CharField(allow_blank=True, help_text="The function's docstring.")
    is_async = serializers.BooleanField()
    parameters = serializers.SerializerMethodField(help_text="The arguments after the workflow context.")
    schedule = serializers.SerializerMethodField(help_text="Its cron expressions, or null when it has no schedule.")
    schedule_tz = serializers.SerializerMethodField(help_text="The zone they are read in; null: the project's TIME_ZONE.")
    next_fire_at = serializers.SerializerMethodField(help_text="When the workers start it next (null: no schedule).")
    concurrency = serializers.IntegerField(allow_null=True, help_text="At most this many instances at once (null: no limit).")
    concurrency_key = serializers.CharField(allow_null=True, help_text="The parameter the limit is counted per, if any.")

    @extend_schema_field(serializers.ListField(child=serializers.CharField(), allow_null=True))
    def get_schedule(self, definition: WorkflowDefinition) -> list[str] | None:
        return list(definition.schedule.expressions) if definition.schedule else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_schedule_tz(self, definition: WorkflowDefinition) -> str | None:
        return definition.schedule.zone if definition.schedule else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_fire_at(self, definition: WorkflowDefinition) -> str | None:
        upcoming = next_fire(definition)
        return None if upcoming is None else serializers.DateTimeField().to_representation(upcoming)

    @extend_schema_field(ParameterSerializer(many=True))
    def get_parameters(self, definition: WorkflowDefinition) -> list[dict[str, Any]]:
        params = list(inspect.signature(definition.fn).parameters.values())[1:]
        return [
            {
                "name": p.name,
                "kind": p.kind.name.lower(),
                "required": p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD),
            }
            for p in params
        ]


class DetailSerializer(serializers.Serializer):
    """The body of 401, 403, 404 and 415 responses."""

    detail = serializers.CharField()


class ConflictSerializer(serializers.Serializer):
    """The body of a 409: the state machine refused the change."""

    detail = serializers.CharField()
    state = serializers.ChoiceField(choices=State.choices, help_text="The instance's state now.")


VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": "Messages by field name (`non_field_errors` for the body as a whole), "
    "or `detail` for a body that is not JSON.",
    "additionalProperties": {
        "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
    },
}
