"""Writing the children a run started: all of them in the run's next commit (children.py)."""

from __future__ import annotations

from django.utils import timezone

from ..conf import settings
from ..models import Event, WorkflowInstance
from ..states import State
from .events import EventBuffer
from .instances import set_deadlines_txn


def insert_children_txn(children: list[WorkflowInstance], buffers: list[EventBuffer]) -> set[str]:
    """Insert the children and their lifecycle rows (one INSERT each, whatever their number)
    inside the run's transaction. Returns the ids found taken, which are left as they are:
    a child an older release created before the record of its start (it is queued if it
    was left Pending), or an instance made by hand under the id the parent derives, which
    the parent's `wait_child` then refuses as not its child."""
    taken = set(WorkflowInstance.objects.filter(pk__in=[c.pk for c in children]).values_list("pk", flat=True))
    fresh = [c for c in children if c.pk not in taken]
    now = timezone.now()
    for child in fresh:
        if child.state == State.QUEUED:
            child.dispatched_at = now
    WorkflowInstance.objects.bulk_create(fresh)
    set_deadlines_txn(fresh)
    if settings.EVENT_LOG:
        Event.objects.bulk_create(
            Event(instance_id=b.instance_id, kind=e.kind, position=e.position, data=e.data, created_at=e.at)
            for b in buffers if b.instance_id not in taken for e in b.pending)
    return taken
