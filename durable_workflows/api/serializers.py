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

from .. import codecs, serialization
from ..bulk import ACTIONS
from ..engine import ratelimit
from ..engine.schedules import next_fire
from ..exceptions import SerializationError, UnknownWorkflow
from ..filters import MOMENTS
from ..models import Alarm, StepRecord, WorkflowInstance
from ..registry import WorkflowDefinition, get_definition
from ..serialization import decode_input
from ..start_options import StartOptions
from ..states import State

INPUT_SCHEMA = {
    "oneOf": [
        {"type": "object", "additionalProperties": True, "description": "Keyword arguments."},
        {"type": "array", "items": {}, "description": "Positional arguments."},
    ],
}
ERROR_INFO_FIELDS = ("type", "message", "traceback")
#: With a codec set, what a user without the view_payloads permission gets for a value.
PLACEHOLDER_SCHEMA = {"type": "string", "enum": [codecs.PLACEHOLDER],
                      "description": "Encrypted at rest, and not shown to this user."}


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

    def values_shown(self) -> bool:
        """Whether the requesting user sees stored values in plain (codecs.shown_to); the
        nested step records are handed the answer."""
        known = self.context.get("values_shown")
        if known is None:
            known = codecs.shown_to(getattr(self.context.get("request"), "user", None))
        return bool(known)

    @extend_schema_field(OpenApiTypes.ANY)
    def get_result(self, row: StepRecord | WorkflowInstance) -> Any:
        if row.result is not None and not self.values_shown():
            return codecs.PLACEHOLDER
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
            "cancel_requested", "cancel_reason", "priority", "start_at", "held", "held_reason",
            "created_at", "started_at", "updated_at", "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field({"oneOf": [*INPUT_SCHEMA["oneOf"], PLACEHOLDER_SCHEMA],
                          "description": "The arguments it was started with."})
    def get_input(self, instance: WorkflowInstance) -> Any:
        return input_json(instance) if self.values_shown() else codecs.PLACEHOLDER

    @extend_schema_field({"oneOf": [{"type": "object", "additionalProperties": True}, PLACEHOLDER_SCHEMA]})
    def get_meta(self, instance: WorkflowInstance) -> Any:
        if instance.meta and not self.values_shown():
            return codecs.PLACEHOLDER
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
    rate_limited_until = serializers.SerializerMethodField(
        help_text="When its workflow's rate limit lets a Queued instance held back by it start, else null.")

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "run_count", "recovery_count", "deadline_at",
                  "parent", "children", "forked_from", "rate_limited_until", "alarm", "steps"]
        read_only_fields = fields

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_rate_limited_until(self, instance: WorkflowInstance) -> str | None:
        until = ratelimit.limited_until(instance)
        return None if until is None else serializers.DateTimeField().to_representation(until)

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_children(self, instance: WorkflowInstance) -> list[str]:
        return instance.child_ids()

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, instance: WorkflowInstance) -> list[dict[str, Any]]:
        records = sorted(StepRecord.objects.filter(instance_id=instance.pk), key=lambda r: r.sort_key)
        # many=True makes a ListSerializer, whose data is a list; the stubs type it as one record's.
        return cast("list[dict[str, Any]]", StepSerializer(
            records, many=True, context={**self.context, "values_shown": self.values_shown()}).data)

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


@extend_schema_field({"type": "integer", "minimum": -100, "maximum": 100, "nullable": True})
class PriorityField(serializers.JSONField):
    """Taken as given, so that 1.5, true or "5" is refused by the start's own check, by name."""


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number", "minimum": 0}], "nullable": True})
class DurationField(serializers.JSONField):
    """A duration as `client.start` takes it: text ("5m", "2 hours") or a number of seconds."""


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
    priority = PriorityField(
        required=False, allow_null=True, default=None,
        help_text="-100 to 100, larger first (default: the workflow's, 0 unless it says otherwise): "
        "where instances wait for a slot, the higher start first.",
    )
    delay = DurationField(
        required=False, allow_null=True, default=None,
        help_text='Start after this long: seconds, or text such as "5m" or "2 hours".',
    )
    start_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None,
        help_text="Start at this time (ISO 8601 with an offset); not with delay.",
    )
    debounce = DurationField(
        required=False, allow_null=True, default=None,
        help_text="Collapse the starts with the same debounce_key that come within this long into one, "
        "with the last one's input.",
    )
    debounce_key = serializers.JSONField(required=False, allow_null=True, default=None,
                                         help_text="Any JSON value: the starts to collapse share it.")
    debounce_max = DurationField(required=False, allow_null=True, default=None,
                                         help_text="A debounced start waits at most this long after the first.")

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
        try:
            StartOptions.parse(instance_id=data.get("instance_id"), **options(data))
        except ValueError as exc:
            raise serializers.ValidationError({_named(str(exc)): [str(exc)]}) from None
        return data


#: The start body's fields that are `client.start`'s options.
OPTIONS = ("priority", "delay", "start_at", "debounce", "debounce_key", "debounce_max")


def _named(message: str) -> str:
    """The field a message about the options is about (the first it names)."""
    found = [(message.find(name), name) for name in OPTIONS if name in message]
    return min(found, key=lambda f: (f[0], -len(f[1])))[1] if found else "non_field_errors"


def options(data: dict[str, Any]) -> dict[str, Any]:
    """The start options of a validated start body, as `client.start_with` takes them."""
    return {name: data.get(name) for name in OPTIONS}


class CancelSerializer(serializers.Serializer):
    reason = ExactCharField(
        required=False, allow_blank=True, default="", max_length=10_000,
        help_text="Kept on the instance and sent with the workflow.cancelled event.",
    )


class PauseSerializer(serializers.Serializer):
    reason = ExactCharField(
        required=False, allow_blank=True, default="", max_length=10_000,
        help_text="Why it is held: kept on the instance (`held_reason`) until it is resumed.",
    )


class ResumeSerializer(serializers.Serializer):
    """No fields: resume takes no body."""


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


FILTER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "Which instances: those that match every filter given (at least one).",
    "properties": {
        "state": {"oneOf": [
            {"type": "string", "enum": [s.value for s in State]},
            {"type": "array", "items": {"type": "string", "enum": [s.value for s in State]}, "minItems": 1},
        ], "description": "One state, or a list of them."},
        "workflow": {"type": "string", "description": "A workflow name."},
        "parent": {"type": "string", "description": "The children of this instance."},
        "forked_from": {"type": "string", "description": "The forks of this instance."},
        "id_prefix": {"type": "string", "minLength": 1, "description": "Ids that start with this."},
        **{name: {"type": "string", "format": "date-time",
                  "description": f"{name.split('_')[0].capitalize()} strictly {name.split('_')[1]} this time "
                                 "(ISO 8601 with an offset)."}
           for name in MOMENTS},
    },
}


@extend_schema_field(FILTER_SCHEMA)
class FilterField(serializers.DictField):
    """The filters as a JSON object; their values are checked by `filters.from_data`."""


class BulkSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=sorted(ACTIONS), help_text="What to do to each instance.")
    filter = FilterField(help_text="The filters of the instance list (at least one).")
    reason = ExactCharField(
        required=False, allow_blank=True, default="", max_length=10_000,
        help_text="Kept on the instances (a cancel's reason).",
    )


class BulkResultSerializer(serializers.Serializer):
    action = serializers.CharField()
    count = serializers.IntegerField(help_text="How many instances took the action (for fork: forks made).")


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
    rate_limit = serializers.CharField(allow_null=True, help_text='At most N first claims per period, "N/s|m|h|d" (null: no limit).')
    rate_key = serializers.CharField(allow_null=True, help_text="The parameter the rate is counted per, if any.")

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
