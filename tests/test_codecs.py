"""Encryption at rest (CODEC, CODEC_KEYS): values round-trip through workflows, nothing of
them is readable in the tables, keys rotate, and only `view_payloads` shows them in plain."""

from __future__ import annotations

import io
import re
import sys

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission, User
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from durable_workflows import CodecError, client, rotation, send_event, serialization, workflow
from durable_workflows.codecs import PLACEHOLDER, FernetCodec, key_id, sealed_key
from durable_workflows.models import InboxMessage, StepRecord, WorkflowInstance
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db(transaction=True)

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
MARK = "zebra-7361"
#: The tables that hold user values, and the event log beside them.
TABLES = (WorkflowInstance, StepRecord, InboxMessage, "durable_workflows_event")


def codec(*keys: str):
    """override_settings with a Fernet codec of `keys` (newest first); none: no codec."""
    values = {**django_settings.DURABLE_WORKFLOWS}
    if keys:
        values.update(CODEC="durable_workflows.codecs.FernetCodec", CODEC_KEYS=list(keys))
    return override_settings(DURABLE_WORKFLOWS=values)


def shout(text: str) -> str:
    return f"{text}-step"


@workflow("codec.secret")
def secret(wf, text: str) -> dict:
    stepped = wf.step("Shout", shout, text)
    wf.set_meta("note", f"{text}-meta")
    received = wf.wait_for_event("reply")
    return {"step": stepped, "event": received}


def run(instance_id: str = "sealed") -> client.WorkflowHandle:
    handle = client.start("codec.secret", MARK, instance_id=instance_id)
    assert send_event(handle.instance_id, "reply", {"said": f"{MARK}-event"}) is True
    return handle.refresh()


def waiting(instance_id: str = "waiting") -> client.WorkflowHandle:
    """An instance paused at its event wait, with a message of another name in its inbox."""
    handle = client.start("codec.secret", MARK, instance_id=instance_id)
    send_event(instance_id, "other", f"{MARK}-inbox")
    return handle.refresh()


EXPECTED = {"step": f"{MARK}-step", "event": {"said": f"{MARK}-event"}}


def assert_reads(handle: client.WorkflowHandle) -> None:
    handle = handle.refresh()
    assert handle.state == "completed"
    assert handle.result() == EXPECTED
    assert handle.meta == {"note": f"{MARK}-meta"}
    assert client.meta(handle.instance_id, "note") == f"{MARK}-meta"
    assert [step.result for step in handle.steps][:2] == [f"{MARK}-step", {"said": f"{MARK}-event"}]


def raw_rows() -> str:
    """Every row of the tables as the database holds it."""
    text = []
    with connection.cursor() as cursor:
        for table in TABLES:
            name = table if isinstance(table, str) else table._meta.db_table
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(name)}")
            text += [repr(row) for row in cursor.fetchall()]
    return "\n".join(text)


def stored_values() -> list[str]:
    rows = [*WorkflowInstance.objects.values_list("input", "result"),
            *StepRecord.objects.filter(kind__in=["step", "event"]).values_list("result"),
            *InboxMessage.objects.values_list("payload")]
    return [value for row in rows for value in row if value]


def test_values_round_trip_and_no_table_holds_them_in_plain():
    with codec(NEW):
        handle = run()
        waiting()
        assert_reads(handle)
        rows = raw_rows()
        assert MARK not in rows
        assert "dwenc" in rows
        assert {sealed_key(value) for value in stored_values()} == {key_id(NEW)}
        assert WorkflowInstance.objects.values_list("meta", flat=True).get(pk="sealed") == {"note": f"{MARK}-meta"}


def test_without_a_codec_values_are_stored_in_plain_as_before():
    handle = run()
    assert_reads(handle)
    assert MARK in raw_rows()
    assert all(sealed_key(value) is None for value in stored_values())


def test_values_stored_before_the_codec_was_set_still_read():
    handle = run()
    with codec(NEW):
        assert_reads(handle)


def test_an_older_key_second_still_reads_and_rotation_moves_every_value_to_the_newest():
    with codec(OLD):
        handle = run()
        waiting()
        plain = client.start("codec.secret", "other")  # sealed too: it runs under the codec
    before = run("before")  # stored in plain, before the codec
    with codec(NEW, OLD):
        assert_reads(handle)
        dry = call("rotate-keys", "--dry-run")
        assert "Would rewrite" in dry
        assert {sealed_key(value) for value in stored_values()} == {key_id(OLD), None}
        out = call("rotate-keys", "--chunk-size", "2")
        assert out.startswith("Rewrote ")
        assert dry.split(" ", 2)[2] == out.split(" ", 1)[1]  # the same counts
        assert "workflowinstance.meta: 4" in out  # the three sealed under OLD, and the plain one
        assert {sealed_key(value) for value in stored_values()} == {key_id(NEW)}
        assert call("rotate-keys").startswith("Rewrote 0 values")
    with codec(NEW):
        assert_reads(handle)
        assert_reads(before)
        assert plain.refresh().state == "paused"
        assert MARK not in raw_rows()


def test_rotation_leaves_alone_a_value_a_worker_wrote_since_it_was_read():
    with codec(OLD):
        handle = run()
    with codec(NEW, OLD):
        read = WorkflowInstance.objects.values_list("result", flat=True).get(pk=handle.instance_id)
        written = serialization.dumps({"written": "meanwhile"}, "a result")  # under NEW
        WorkflowInstance.objects.filter(pk=handle.instance_id).update(result=written)
        assert rotation._write(WorkflowInstance, "result", [(handle.instance_id, read, "stale")]) == 0
        assert handle.refresh().result() == {"written": "meanwhile"}


def test_a_value_under_a_key_no_longer_held_names_the_key():
    with codec(OLD):
        handle = run()
    with codec(NEW):
        with pytest.raises(CodecError, match=f"encrypted with key {key_id(OLD)}, which CODEC_KEYS does not hold"):
            client.get(handle.instance_id)
        with pytest.raises(CommandError, match=key_id(OLD)):
            call("rotate-keys")
    with pytest.raises(CodecError, match=f"key {key_id(OLD)}, and DURABLE_WORKFLOWS sets no CODEC"):
        client.get(handle.instance_id)


def test_a_tampered_value_is_an_error_not_garbage():
    with codec(NEW):
        handle = run()
        stored = WorkflowInstance.objects.values_list("result", flat=True).get(pk=handle.instance_id)
        WorkflowInstance.objects.filter(pk=handle.instance_id).update(result=stored[:-6] + "AAAAAA")
        with pytest.raises(CodecError, match="does not decrypt"):
            handle.refresh().result()


def test_codec_encodes_text_and_bytes_under_a_key_id():
    fernet = FernetCodec([NEW, OLD])
    sealed = fernet.encode("hé")
    assert sealed.startswith(f"dwenc:1:{key_id(NEW)}:") and fernet.decode(sealed) == "hé"
    assert fernet.decode(fernet.encode(b"\xff\x00")) == b"\xff\x00"
    assert fernet.decode('{"plain": 1}') == '{"plain": 1}'
    assert FernetCodec([OLD]).decode(FernetCodec([OLD, NEW]).encode("x")) == "x"


@pytest.mark.parametrize("keys, wrong", [
    (["not a key"], "CODEC_KEYS[0] is not a Fernet key"),
    ([], "must be a non-empty list"),
    ("abc", "must be a non-empty list"),
])
def test_a_bad_key_is_a_system_check_error_and_refused_where_used(keys, wrong):
    values = {**django_settings.DURABLE_WORKFLOWS, "CODEC": "durable_workflows.codecs.FernetCodec",
              "CODEC_KEYS": keys}
    with override_settings(DURABLE_WORKFLOWS=values):
        errors = [m for m in run_checks() if m.id == "durable_workflows.E010"]
        assert len(errors) == 1 and wrong in errors[0].msg
        with pytest.raises(ImproperlyConfigured, match=re.escape(wrong)):
            client.start("codec.secret", MARK)
    assert not WorkflowInstance.objects.exists()


def test_a_codec_without_cryptography_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    with pytest.raises(ImproperlyConfigured, match=r"django-durable-workflows\[encryption\]"):
        FernetCodec([NEW])


def test_rotate_keys_without_a_codec_is_refused():
    with pytest.raises(CommandError, match="CODEC is not set"):
        call("rotate-keys")


def call(*args: str) -> str:
    out = io.StringIO()
    call_command("durable_workflows", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# -- who sees plain values -------------------------------------------------------------------
def payload_reader(name: str) -> User:
    user = staff_user(name, ("view",))
    user.user_permissions.add(Permission.objects.get(codename="view_payloads"))
    return User.objects.get(pk=user.pk)  # without the permission cache of the user above


def api_detail(user: User, instance_id: str) -> dict:
    api = APIClient()
    api.force_login(user)
    response = api.get(f"/api/workflows/instances/{instance_id}/")
    assert response.status_code == 200
    return response.json()


def test_the_api_shows_values_only_to_holders_of_view_payloads():
    with codec(NEW):
        run()
        hidden = api_detail(staff_user("viewer", ("view",)), "sealed")
        assert (hidden["input"], hidden["result"], hidden["meta"]) == (PLACEHOLDER,) * 3
        assert hidden["steps"][0]["result"] == PLACEHOLDER and MARK not in str(hidden)
        for user in (payload_reader("reader"), User.objects.create_superuser("root")):
            shown = api_detail(user, "sealed")
            assert shown["input"] == [MARK] and shown["result"] == EXPECTED
            assert shown["meta"] == {"note": f"{MARK}-meta"} and shown["steps"][0]["result"] == f"{MARK}-step"
        api = APIClient()
        api.force_login(User.objects.get(username="viewer"))
        assert MARK not in api.get("/api/workflows/instances/").content.decode()
    run("plain")  # without a codec, whoever may view it sees it
    assert api_detail(User.objects.get(username="viewer"), "plain")["result"] == EXPECTED


def admin_page(user: User, instance_id: str) -> str:
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    response = browser.get(f"/admin/durable_workflows/workflowinstance/{instance_id}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_admin_shows_values_only_to_holders_of_view_payloads():
    with codec(NEW):
        run()
        waiting()
        viewer = staff_user("viewer", ("view",))
        for instance_id in ("sealed", "waiting"):
            page = admin_page(viewer, instance_id)
            assert MARK not in page and PLACEHOLDER in page
        reader = payload_reader("reader")
        assert f"{MARK}-step" in admin_page(reader, "sealed") and f"{MARK}-meta" in admin_page(reader, "sealed")
        assert f"{MARK}-inbox" in admin_page(reader, "waiting")
    run("plain")
    page = admin_page(User.objects.get(username="viewer"), "plain")
    assert f"{MARK}-event" in page and PLACEHOLDER not in page
