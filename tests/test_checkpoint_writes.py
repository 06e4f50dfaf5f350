"""When a step's record is written: before anything that could have an effect, and with the
end of the run when the step was the run's last act."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from durable_workflows import client
from durable_workflows.engine import execute
from durable_workflows.engine.store import single_statements
from durable_workflows.models import StepRecord
from tests.helpers import logged, queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_finished_step_is_on_record_before_the_next_step_runs():
    handle = client.start("engine.sees_its_last_step")
    assert handle.refresh().result() == "completed"


def test_the_last_step_goes_out_with_the_end_of_the_run():
    handle = queued("engine.loop", 3)
    with CaptureQueriesContext(connection) as queries:
        assert execute(handle.instance_id, "fresh", handle.instance.epoch) == "completed"
    steps = StepRecord.objects.filter(instance_id=handle.instance_id).order_by("position")
    assert [(s.position, s.state) for s in steps] == [(0, "completed"), (1, "completed"), (2, "completed")]
    kinds = logged(handle.instance_id)
    assert kinds[-3:] == ["step.started", "step.completed", "workflow.completed"]
    if single_statements():  # PostgreSQL on psycopg 3: one statement a write
        # The claim, the first two steps' records (each written as the next step starts),
        # and the third step's record with the move to Completed: four statements.
        assert len(queries.captured_queries) == 4


def test_every_statement_of_a_run_goes_through_the_connections_execute_wrappers():
    """Instrumentation (APM, read-only guards) sees the engine's writes, the single
    PostgreSQL statements included."""
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    handle = queued("engine.loop", 3)
    with connection.execute_wrapper(record):
        assert execute(handle.instance_id, "fresh", handle.instance.epoch) == "completed"
    records = [sql for sql in seen if "INSERT INTO durable_workflows_steprecord" in sql.replace('"', "")]
    assert len(records) == 3, seen  # one write per step's record, each seen
    assert any("UPDATE durable_workflows_workflowinstance" in sql.replace('"', "") for sql in seen)


def test_a_record_built_for_a_new_step_is_the_one_the_model_would_build():
    """The hot path builds records positionally (StepRecord.new); it must match the model's
    own constructor, default by default, and no default may need a call per record."""
    from django.utils import timezone

    now = timezone.now()
    values = {"instance_id": "x", "branch": "1:0", "position": 7, "name": "Charge", "kind": "step",
              "started_at": now}
    fast, slow = StepRecord.new(**values), StepRecord(**values)
    fields = StepRecord._meta.concrete_fields
    assert [getattr(fast, f.attname) for f in fields] == [getattr(slow, f.attname) for f in fields]
    assert fast._state.adding and fast.pk is None
    assert not [f.name for f in fields if f.has_default() and callable(f.default)]
    with pytest.raises(KeyError):
        StepRecord.new(instance=None)  # by column (instance_id), as the hot path passes them


def test_runs_go_on_over_a_new_connection():
    """The engine keeps its statements' cursors with the connection; a reconnect (the
    connection closed, as after a fault or CONN_MAX_AGE) starts afresh."""
    first = client.start("engine.loop", 3)
    assert first.refresh().state == "completed"
    connection.close()
    second = client.start("engine.loop", 3)
    assert second.refresh().state == "completed"
    assert StepRecord.objects.filter(instance_id=second.instance_id).count() == 3
