"""On PostgreSQL, a trigger that notifies the ticker of every alarm written and not yet
fired, with its fire time (engine/wakeup.py). Other databases get nothing: they poll."""

from typing import Any

from django.db import migrations

CHANNEL = "durable_workflows_alarm"
FUNCTION = "durable_workflows_alarm_notify"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("durable_workflows", "Alarm")._meta.db_table)
    schema_editor.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', extract(epoch FROM NEW.fire_at)::text); RETURN NULL; END $$"
    )
    schema_editor.execute(
        f"CREATE TRIGGER {FUNCTION} AFTER INSERT OR UPDATE OF fire_at, fired_at ON {table} "
        f"FOR EACH ROW WHEN (NEW.fired_at IS NULL) EXECUTE FUNCTION {FUNCTION}()"
    )


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("durable_workflows", "Alarm")._meta.db_table)
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {FUNCTION} ON {table}")
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):

    dependencies = [
        ("durable_workflows", "0016_ticker_lease"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
