"""The API against its own OpenAPI schema: Schemathesis sends generated requests (valid and
invalid) through Django's WSGI handler and checks that no answer is a 5xx or strays from the
schema (status code, content type, headers, body).

Bounded: a fixed number of examples per operation, derandomized, no example database, so a
run takes seconds and fails the same way every time.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from durable_workflows import client
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 40
SCHEMA_URL = "/api/workflows/schema/"

# positive_data_acceptance is left out on purpose: whether `input` fits is decided by each
# workflow's Python signature, which JSON Schema cannot state, so a body valid by the schema
# is often (rightly) refused with 400. negative_data_rejection likewise: text fields accept
# any text, so "invalid" cases Schemathesis builds are sometimes valid for the API.
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
]


@pytest.fixture
def wsgi_app():
    """Django's real WSGI handler, without the per-request connection closing that would end
    the test's transaction (Django's own test client turns it off the same way)."""
    request_started.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)


@pytest.fixture
def basic_auth():
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        user = staff_user("fuzzer")
        user.set_password("fuzz-pass")
        user.save()
        token = base64.b64encode(b"fuzzer:fuzz-pass").decode("ascii")
        yield {"Authorization": f"Basic {token}"}


@pytest.fixture
def seeded_ids():
    """Instances in each reachable state, so that detail and cancel meet real ids too."""
    client.start("tests.greet", "Ada", instance_id="seed-completed")
    client.start("tests.nap", "1h", instance_id="seed-paused")
    client.start("tests.nap", "2h", instance_id="seed-to-cancel")
    client.start("tests.flaky", failures=5, max_attempts=1, instance_id="seed-failed")
    client.cancel(client.start("tests.nap", instance_id="seed-cancelled").instance_id, reason="seed")
    client.start("tests.nap", "1h", instance_id=LISTENING)
    return ["seed-completed", "seed-paused", "seed-to-cancel", "seed-failed", "seed-cancelled"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(wsgi_app, basic_auth, seeded_ids, mode):
    schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, wsgi_app, headers=basic_auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {
        "GET /api/workflows/definitions/",
        "GET /api/workflows/instances/",
        "POST /api/workflows/instances/",
        "POST /api/workflows/instances/bulk/",
        "GET /api/workflows/instances/{instance_id}/",
        "POST /api/workflows/instances/{instance_id}/cancel/",
        "POST /api/workflows/instances/{instance_id}/events/",
        "POST /api/workflows/instances/{instance_id}/fork/",
        "POST /api/workflows/instances/{instance_id}/pause/",
        "POST /api/workflows/instances/{instance_id}/resume/",
    }
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        fuzz(operation, mode, basic_auth, seeded_ids, statuses.setdefault(operation.label, set()))
    # The run reached more than the error paths: every operation answered 2xx at least once.
    if mode == GenerationMode.POSITIVE:
        for label in ("GET /api/workflows/definitions/", "GET /api/workflows/instances/",
                      "POST /api/workflows/instances/", "POST /api/workflows/instances/bulk/",
                      "GET /api/workflows/instances/{instance_id}/",
                      "POST /api/workflows/instances/{instance_id}/cancel/",
                      "POST /api/workflows/instances/{instance_id}/events/",
                      "POST /api/workflows/instances/{instance_id}/fork/",
                      "POST /api/workflows/instances/{instance_id}/pause/",
                      "POST /api/workflows/instances/{instance_id}/resume/"):
            assert any(200 <= code < 300 for code in statuses[label]), (label, statuses[label])
    assert all(code < 500 for codes in statuses.values() for code in codes), statuses


LISTENING = "seed-listening"


def fuzz(operation, mode, auth, seeded_ids, statuses):
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case, data):
        # Half the time, aim at a real instance instead of a generated (unknown) id.
        if "instance_id" in (case.path_parameters or {}) and data.draw(st.booleans()):
            # Events, pauses and resumes go to an instance no cancel is aimed at, so that some
            # are accepted.
            spared = operation.label.endswith(("/events/", "/pause/", "/resume/"))
            choices = [LISTENING] if spared else seeded_ids
            case.path_parameters["instance_id"] = path_segment(data.draw(st.sampled_from(choices)))
        # Generated start bodies name no registered workflow; half of them start a real one,
        # with generated text as its argument and, sometimes, as the instance id.
        started = None
        if operation.label == "POST /api/workflows/instances/" and data.draw(st.booleans()):
            case.body = {"workflow": "tests.greet", "input": {"name": data.draw(st.text(max_size=40))}}
            if data.draw(st.booleans()):
                started = data.draw(st.sampled_from(seeded_ids) | st.text(min_size=1, max_size=60))
                case.body["instance_id"] = started
        # A bulk action whose filters are all valid would cancel the seeded instances the other
        # operations aim at: it is kept to ids that none has.
        if operation.label == "POST /api/workflows/instances/bulk/" and isinstance(case.body, dict) \
                and isinstance(case.body.get("filter"), dict):
            case.body["filter"]["id_prefix"] = "fuzzed-"
        response = case.call_and_validate(headers=auth, checks=CHECKS)
        statuses.add(response.status_code)
        if response.status_code == 201 and started and "/" not in started:
            seeded_ids.append(started)

    exercise()


def path_segment(instance_id: str) -> str:
    """An id as it must appear in a URL: percent-encoded, and never "." or ".." (which a
    client would resolve as a relative path)."""
    if instance_id in (".", ".."):
        return instance_id.replace(".", "%2E")
    return quote(instance_id, safe="")
