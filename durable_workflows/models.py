"""What is stored: instances, their step records, their pending alarm and their event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from .choices import AlarmReason, StepKind, StepState
from .codecs import SealedJSONField
from .coordination import LimiterUnit, ScheduleFire, TickerLease  # noqa: F401  (models of the app too)
from .managers import AliasManager
from .states import State, as_state

#: The lease owner of a Running instance a recovery scan has reserved for its recovery run.
RECOVERY_OWNER = "recovery:"


def _as_state(value: Any) -> Any:
    """A State for any spelling of one ("paused", "Paused"); anything else as it is, for
    the field's validation (or a query) to deal with."""
    if isinstance(value, str):
        try:
            return as_state(value)
        except ValueError:
            return value
    return value


class StateField(models.CharField):
    """An instance's state: read back as a `State`, which compares equal to "paused" and
    "Paused" alike, and stored in lower case whichever spelling it was given in."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return _as_state(value)

    def to_python(self, value: Any) -> Any:
        return _as_state(super().to_python(value))

    def get_prep_value(self, value: Any) -> Any:
        value = _as_state(super().get_prep_value(value))
        return value.value if isinstance(value, State) else value


class StampField(models.DateTimeField):
    """A creation or update time (`auto_now_add`, `auto_now`) stamped by the engine's clock
    rather than `timezone.now()`: deadlines are counted from an instance's creation time,
    `wf.now()` starts from it and retention and the admin compare it with the engine's
    times, so it must be on the same clock (the database server's on PostgreSQL, a test's
    virtual clock under `durable_workflows.testing`). Stored as a DateTimeField is: its
    migrations name that, so none is needed for a difference the database never sees."""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        if add and getattr(model_instance, self.attname) is not None:
            # Born at a time of the engine's choosing (engine/lifecycle.py): the deadline
            # was counted from it, so the row must keep it.
            return getattr(model_instance, self.attname)
        if self.auto_now or (self.auto_now_add and add):
            from .engine import clock  # here: the engine imports the models as it loads

            value = clock.now()
            setattr(model_instance, self.attname, value)
            return value
        return super().pre_save(model_instance, add)

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs


class ErrorFields(models.Model):
    """The failure of an instance or a step: its exception type, message and traceback."""

    error_type = models.CharField("error type", max_length=255, blank=True, default="")
    error_message = models.TextField("error message", blank=True, default="")
    error_traceback = models.TextField("error traceback", blank=True, default="")

    class Meta:
        abstract = True

    @property
    def error(self) -> dict[str, str] | None:
        if not self.error_type and not self.error_message:
            return None
        return {
            "type": self.error_type,
            "message": self.error_message,
            "traceback": self.error_traceback,
        }


class WorkflowInstance(ErrorFields):
    id = models.CharField(
        "id", max_length=255, primary_key=True,
        help_text="Given to start() for an idempotent start, or generated.",
    )
    workflow = models.CharField(
        "workflow", max_length=255, db_index=True,
        help_text="The registered name of the workflow function.",
    )
    input = models.TextField(
        "input", default="", blank=True,
        help_text="The positional and keyword arguments, serialized.",
    )
    state = StateField(
        "state", max_length=16, choices=State.choices, default=State.PENDING,
        help_text="Changes only through the state machine.",
    )
    result = models.TextField("result", null=True, blank=True, help_text="The return value, serialized.")
    meta = SealedJSONField(
        "meta", default=dict, blank=True,
        help_text="Small values the workflow publishes with wf.set_meta() (progress).",
    )
    created_at = StampField("created", auto_now_add=True)
    started_at = models.DateTimeField("started", null=True, blank=True, help_text="First claim.")
    updated_at = StampField("updated", auto_now=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)
    dispatched_at = models.DateTimeField(
        "dispatched", null=True, blank=True,
        help_text="When the instance was last handed to the task queue.",
    )
    # db_default too: a worker or web process of the release before, still running while
    # this one migrates, inserts instances without the column.
    redispatches = models.PositiveIntegerField(
        "sent again", default=0, db_default=0,
        help_text="How many times recovery sent its task again since it last ran; each wait "
                  "for the next is twice as long, so a backlog does not feed itself.",
    )
    run_count = models.PositiveIntegerField("runs", default=0, help_text="How many times it was claimed.")
    generation = models.PositiveIntegerField(
        "generation", default=0, db_default=0,
        help_text="How many times it continued as new (wf.continue_as_new): 0 for the first run of its history.",
    )
    generation_started_at = models.DateTimeField(
        "generation started", null=True, blank=True,
        help_text="When its current generation began; wf.now() and the deadline count from it. Null: the first.",
    )
    last_mode = models.CharField(
        "last mode", max_length=16, blank=True, default="",
        help_text="fresh, resume or recover: how the last run started.",
    )
    lease_owner = models.CharField(
        "lease owner", max_length=255, blank=True, default="",
        help_text="The executor (host:pid:thread) running it now.",
    )
    lease_expires_at = models.DateTimeField(
        "lease expires", null=True, blank=True,
        help_text="Past this, a Running instance is considered abandoned and recovered.",
    )
    epoch = models.PositiveIntegerField(
        "epoch", default=0,
        help_text="Fencing token, +1 on every claim: writes from an older claim are refused.",
    )
    recovery_count = models.PositiveIntegerField(
        "recoveries", default=0,
        help_text="Recoveries since a step last finished.",
    )
    # No database constraint, as for every row that points at an instance: the engine writes
    # them under its fence, deletes (the ORM's and retention's) take them along, and a purge
    # need not have the database check three tables for each instance it deletes.
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="child_instances",
        verbose_name="parent", help_text="The instance that started this one with wf.start_child().",
        db_constraint=False,
    )
    parent_position = models.PositiveIntegerField(
        "position in the parent", null=True, blank=True,
        help_text="Where in the parent's run the child was started.",
    )
    forked_from = models.CharField(
        "forked from", max_length=255, null=True, blank=True,
        help_text="The instance this one was forked from (client.fork), to repair it.",
    )
    family_pending = models.BooleanField(
        "family not yet told", default=False,
        help_text="It finished, and its parent or children have not yet been told.",
    )
    deadline_at = models.DateTimeField(
        "deadline", null=True, blank=True,
        help_text="From the workflow's timeout: past it, the instance fails with WorkflowTimeout.",
    )
    cancel_requested = models.BooleanField("cancel requested", default=False)
    cancel_reason = models.TextField("cancel reason", blank=True, default="")
    concurrency_key = models.CharField(
        "concurrency key", max_length=255, null=True, blank=True,
        help_text="For a workflow with concurrency=N: the value of its concurrency_key argument "
                  "(JSON; empty when the limit is for the whole workflow). Null: no limit.",
    )
    trace_parent = models.CharField(
        "trace parent", max_length=128, blank=True, default="", db_default="",
        help_text="W3C trace context of the start, which its runs' spans continue (tracing).",
    )
    slot_held = models.BooleanField(
        "holds a slot", default=False, db_default=False,
        help_text="It counts against its workflow's concurrency limit, from its first claim until it finishes.",
    )
    priority = models.SmallIntegerField(
        "priority", default=0, db_default=0,
        help_text="-100 to 100, larger first: where instances wait for a slot, the higher start "
                  "first, then the oldest.",
    )
    start_at = models.DateTimeField(
        "scheduled for", null=True, blank=True,
        help_text="A start with delay=, start_at= or debounce=: it stays Queued until then.",
    )
    debounce_key = models.CharField(
        "debounce key", max_length=255, null=True, blank=True,
        help_text="A debounced start's key (JSON): later starts with it, while this one has not "
                  "started, replace its arguments and push its start back.",
    )
    held = models.BooleanField(
        "held", default=False, db_default=False,
        help_text="Paused by an operator (client.pause): nothing starts or resumes it until client.resume.",
    )
    held_reason = models.TextField(
        "hold reason", blank=True, default="", db_default="",
        help_text="Why it was paused, as given to client.pause.",
    )
    rate_key = models.CharField(
        "rate key", max_length=255, null=True, blank=True, default=None, db_default=None,
        help_text="For a workflow with rate_limit=: the value of its rate_key argument (JSON; empty "
                  "when the limit is for the whole workflow). Its first claim counts for that rate.",
    )

    objects = AliasManager()

    class Meta:
        base_manager_name = "objects"
        verbose_name = "workflow instance"
        verbose_name_plural = "workflow instances"
        ordering = ["-created_at"]
        indexes = [
            # The lists' order, newest first with the id between equal times: a page of any
            # list, filtered by state or workflow or not, is one range of one of these.
            models.Index(fields=["-created_at", "-id"], name="dw_instance_created_id"),
            models.Index(fields=["state", "-created_at", "-id"], name="dw_instance_state_created_id"),
            models.Index(fields=["workflow", "-created_at", "-id"], name="dw_instance_workflow_created"),
            models.Index(
                fields=["lease_expires_at"], name="dw_instance_stale",
                condition=Q(state="running"),
            ),
            models.Index(
                fields=["dispatched_at"], name="dw_instance_queued",
                condition=Q(state="queued"),
            ),
            models.Index(
                fields=["finished_at"], name="dw_instance_family", condition=Q(family_pending=True),
            ),
            models.Index(
                fields=["deadline_at"], name="dw_instance_deadline",
                condition=Q(deadline_at__isnull=False, state__in=["paused", "queued"]),
            ),
            # Retention deletes the oldest finished first, a batch after the other.
            models.Index(
                fields=["finished_at", "id"], name="dw_instance_finished",
                condition=Q(finished_at__isnull=False),
            ),
            models.Index(
                fields=["workflow", "concurrency_key"], name="dw_instance_slots",
                condition=Q(slot_held=True, state__in=["running", "paused"]),
            ),
            # The queue for a slot, in the order it goes (engine/priority.py).
            models.Index(
                fields=["workflow", "concurrency_key", "-priority", "created_at", "id"],
                name="dw_instance_slot_order",
                condition=Q(concurrency_key__isnull=False, state="queued"),
            ),
            models.Index(
                fields=["workflow", "debounce_key"], name="dw_instance_debounce",
                condition=Q(debounce_key__isnull=False, state="queued"),
            ),
            # The first claims of a rate-limited group, counted over the window.
            models.Index(
                fields=["workflow", "rate_key", "started_at"], name="dw_instance_rate",
                condition=Q(rate_key__isnull=False),
            ),
        ]
        permissions = [
            ("cancel_workflowinstance", "Can cancel workflow instances"),
            ("view_payloads", "Can see stored values in plain while they are encrypted"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow} {self.pk} ({self.get_state_display()})"

    def child_ids(self) -> list[str]:
        """The ids of the instances this one started with `wf.start_child`, in start order."""
        return list(
            WorkflowInstance.objects.filter(parent_id=self.pk)
            .order_by("created_at", "parent_position", "pk").values_list("pk", flat=True)
        )

    def is_stale(self, now: datetime | None = None) -> bool:
        """Whether a recovery may take the instance over: it is Running and its lease
        lapsed, or a recovery scan has reserved it (lease owner "recovery:...")."""
        if self.state != State.RUNNING:
            return False
        if self.lease_owner.startswith(RECOVERY_OWNER):
            return True
        from .engine import clock  # here: the engine imports the models as it loads

        expires = self.lease_expires_at
        return expires is None or expires <= (now or clock.now())


class StepRecord(ErrorFields):
    # No index of its own: the unique (instance, branch, position) constraint serves every lookup by
    # instance, and each extra index is written on every step's checkpoint. No database foreign
    # key either, for the reason given on Event: every record is written under the fence (or,
    # for a fork, in the transaction that inserts its instance), so the row is known to exist,
    # and a constraint would check it again at every step's commit.
    instance = models.ForeignKey(
        WorkflowInstance, on_delete=models.CASCADE, related_name="steps",
        verbose_name="instance", db_index=False, db_constraint=False,
    )
    position = models.PositiveIntegerField(
        "position", help_text="Order in the run (or in its branch); how a replay finds the step."
    )
    branch = models.CharField(
        "branch", max_length=255, blank=True, default="",
        help_text="The parallel branch it ran in, such as 3:1 (branch 1 of wf.parallel at "
                  "position 3); empty for the workflow function itself.",
    )
    name = models.CharField("name", max_length=255, help_text="Checked on replay.")
    kind = models.CharField("kind", max_length=16, choices=StepKind.choices, default=StepKind.STEP)
    state = models.CharField("state", max_length=16, choices=StepState.choices)
    result = models.TextField("result", null=True, blank=True, help_text="Serialized return value.")
    attempts = models.PositiveIntegerField("attempts", default=0)
    started_at = models.DateTimeField("started", null=True, blank=True, help_text="First attempt's start.")
    attempt_started_at = models.DateTimeField("attempt started", null=True, blank=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)
    deadline_at = models.DateTimeField(
        "deadline", null=True, blank=True,
        help_text="The running attempt's timeout, stored so that it survives a restart.",
    )
    wake_at = models.DateTimeField(
        "wake at", null=True, blank=True,
        help_text="When a sleep ends, or when a retry is due.",
    )
    error_replay = models.TextField(
        "error for replay", blank=True, default="",
        help_text="The failure's class and arguments, so that a replay raises it again.",
    )

    objects = AliasManager()

    class Meta:
        base_manager_name = "objects"
        verbose_name = "step"
        verbose_name_plural = "steps"
        ordering = ["instance", "branch", "position"]
        # Only the waits under way: the scans look for those whose child has finished.
        indexes = [models.Index(fields=["kind", "name"], name="dw_step_awaiting", condition=Q(state="awaiting"))]
        constraints = [
            models.UniqueConstraint(fields=["instance", "branch", "position"], name="dw_step_unique_slot")
        ]

    def __str__(self) -> str:
        where = f"{self.branch}/{self.position}" if self.branch else str(self.position)
        return f"#{where} {self.name} ({self.get_state_display()})"

    @classmethod
    def new(cls, **values: Any) -> StepRecord:
        """An unsaved record of `values` and the fields' defaults: what `StepRecord(**values)`
        builds. Its attributes are set directly, without the model's constructor, which
        goes through every field one by one: 1 µs instead of 3. Only while nothing listens
        to the model's `pre_init` or `post_init` (they would miss the record) is it built so;
        otherwise positionally, as Django's own loading builds rows."""
        if not values.keys() <= _STEP_INDEX.keys():
            raise KeyError(", ".join(sorted(values.keys() - _STEP_INDEX.keys())))
        if _init_watched(cls):
            row = list(_STEP_DEFAULTS)
            for name, value in values.items():
                row[_STEP_INDEX[name]] = value
            return cls(*row)  # type: ignore[misc]  # the stubs know only keyword construction
        record = cls.__new__(cls)
        # As Model.__init__ leaves them: the state first, then every field by attname.
        attributes = record.__dict__
        attributes["_state"] = ModelState()
        attributes.update(_STEP_DEFAULT_VALUES)
        attributes.update(values)
        return record

    @property
    def slot(self) -> tuple[str, int]:
        """Where the record sits in the run: its branch and its position in that branch."""
        return (self.branch, self.position)

    @property
    def sort_key(self) -> tuple[int, ...]:
        """Orders a run's records as they happened: a branch's records come at the position
        of the `wf.parallel` that started it, before the parent's next position."""
        key: list[int] = []
        for part in filter(None, self.branch.split("/")):
            at, index = part.split(":")
            key += [int(at), int(index)]
        return (*key, self.position)

    @property
    def duration(self) -> Any:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


# Every default of a step's fields is an immutable constant (a test holds them to it), so one
# tuple serves every record; values go in by attname (instance_id, not instance).
_STEP_DEFAULTS = tuple(f.get_default() for f in StepRecord._meta.concrete_fields)
_STEP_INDEX = {f.attname: i for i, f in enumerate(StepRecord._meta.concrete_fields)}
_STEP_DEFAULT_VALUES = dict(zip(_STEP_INDEX, _STEP_DEFAULTS, strict=True))


def _init_watched(model: type[models.Model]) -> bool:
    """Whether a receiver of `pre_init` or `post_init` would see an instance of `model`
    being built (the signals cache the answer per sender)."""
    return bool(pre_init.receivers and pre_init.has_listeners(model)) or \
        bool(post_init.receivers and post_init.has_listeners(model))


class Alarm(models.Model):
    instance = models.OneToOneField(
        WorkflowInstance, on_delete=models.CASCADE, primary_key=True, related_name="alarm",
        verbose_name="instance", db_constraint=False,
    )
    fire_at = models.DateTimeField("fire at", help_text="When the instance is due to resume.")
    reason = models.CharField("reason", max_length=16, choices=AlarmReason.choices)
    position = models.PositiveIntegerField("position", help_text="The step or sleep it ends.")
    branch = models.CharField("branch", max_length=255, blank=True, default="",
                              help_text="The parallel branch of that position, if any.")
    epoch = models.PositiveIntegerField(
        "epoch", help_text="The instance epoch it resumes; a later claim makes it void."
    )
    fired_at = models.DateTimeField(
        "fired", null=True, blank=True,
        help_text="When a dispatcher handed the resume to the queue.",
    )
    created_at = StampField("created", auto_now_add=True)

    objects = AliasManager()

    class Meta:
        base_manager_name = "objects"
        verbose_name = "alarm"
        verbose_name_plural = "alarms"
        ordering = ["fire_at"]
        indexes = [
            models.Index(fields=["fire_at"], name="dw_alarm_due", condition=Q(fired_at__isnull=True)),
            models.Index(fields=["fired_at"], name="dw_alarm_fired", condition=Q(fired_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} alarm for {self.instance_id} at {self.fire_at:%Y-%m-%d %H:%M:%S}"


class Event(models.Model):
    """One lifecycle event, append-only.

    Every event is written by a statement or transaction that has already locked its instance
    row (the fence of a run, or the compare-and-set of a transition), so the row is known to
    exist and cannot be deleted before the commit: a database foreign key would check that
    again for every event, at every commit. Deleting an instance still deletes its events
    (Django cascades them), and `manage.py durable_workflows purge` goes through that path.
    """

    id = models.BigAutoField(primary_key=True)
    instance = models.ForeignKey(
        WorkflowInstance, on_delete=models.CASCADE, related_name="events",
        verbose_name="instance", db_constraint=False, db_index=False,
    )
    kind = models.CharField("event", max_length=40, help_text="For example step.completed.")
    position = models.PositiveIntegerField("position", null=True, blank=True)
    data = models.JSONField("data", default=dict, blank=True)
    created_at = models.DateTimeField("at")

    objects = AliasManager()

    class Meta:
        base_manager_name = "objects"
        verbose_name = "event"
        verbose_name_plural = "events"
        ordering = ["instance", "id"]
        indexes = [models.Index(fields=["instance", "id"], name="dw_event_instance")]

    def __str__(self) -> str:
        return f"{self.kind} {self.instance_id}"


class InboxMessage(models.Model):
    """An event sent to an instance (`send_event`), kept until a `wf.wait_for_event` of its
    name takes it. Called a message here: "event" is the lifecycle log."""

    id = models.BigAutoField(primary_key=True)
    instance = models.ForeignKey(
        WorkflowInstance, on_delete=models.CASCADE, related_name="inbox", verbose_name="instance",
        db_index=False, db_constraint=False,
    )
    name = models.CharField("name", max_length=255, help_text="What a wait asks for.")
    payload = models.TextField("payload", null=True, blank=True, help_text="Serialized.")
    event_id = models.CharField(
        "event id", max_length=255, null=True, blank=True,
        help_text="The sender's key: a second event with it is ignored (a redelivered webhook).",
    )
    received_at = models.DateTimeField("received")
    taken_at = models.DateTimeField("taken", null=True, blank=True)
    taken_position = models.PositiveIntegerField(
        "taken at position", null=True, blank=True, help_text="The wait that took it."
    )

    objects = AliasManager()

    class Meta:
        base_manager_name = "objects"
        verbose_name = "received event"
        verbose_name_plural = "received events"
        ordering = ["instance", "id"]
        indexes = [
            models.Index(fields=["instance", "id"], name="dw_inbox_instance"),
            models.Index(fields=["instance", "name", "id"], name="dw_inbox_waiting",
                         condition=Q(taken_at__isnull=True)),
        ]
        constraints = [
            models.UniqueConstraint(fields=["instance", "event_id"], name="dw_inbox_event_id",
                                    condition=Q(event_id__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.name} for {self.instance_id}"
