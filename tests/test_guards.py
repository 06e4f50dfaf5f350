"""Guards: migrations complete, every setting documented (docs/reference/settings.md), public
names exported, the engine free of django-q2."""

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

import durable_workflows
from durable_workflows.conf import DEFAULTS, settings

PACKAGE = Path(durable_workflows.__file__).resolve().parent
SETTINGS_PAGE = (Path(__file__).resolve().parent.parent / "docs" / "reference" / "settings.md").read_text()


@pytest.mark.django_db
def test_migrations_are_complete():
    out = StringIO()
    call_command("makemigrations", "durable_workflows", "--check", "--dry-run", stdout=out)


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_setting_is_documented_with_its_default(key):
    row = re.search(rf"^## `{key}`\n\nDefault: (.+)$", SETTINGS_PAGE, re.MULTILINE)
    assert row, f"{key} has no section with its default in docs/reference/settings.md"
    default = DEFAULTS[key]
    shown = row.group(1).strip("`\"")
    assert str(default).strip("[]'\"") in shown.replace('"', "").replace("'", "")


def test_the_settings_page_lists_only_settings_that_exist():
    listed = re.findall(r"^## `(\w+)`$", SETTINGS_PAGE, re.MULTILINE)
    assert sorted(listed) == sorted(DEFAULTS)


def test_public_names_are_exported():
    for name in ("workflow", "RetryPolicy", "start", "get", "cancel", "list", "meta",
                 "run_inline", "client", "NonRetryableError", "WorkflowNotFound",
                 "UnknownWorkflow", "InvalidTransition", "NonDeterminismError",
                 "SerializationError", "StepTimeout", "StepScopeError", "WorkflowCancelled"):
        assert getattr(durable_workflows, name) is not None
    from durable_workflows import client

    assert client.start is durable_workflows.start


def test_override_settings_is_seen():
    from django.test import override_settings

    with override_settings(DURABLE_WORKFLOWS={"LEASE_SECONDS": 99, "HEARTBEAT_SECONDS": 5}):
        assert settings.LEASE_SECONDS == 99
    assert settings.LEASE_SECONDS != 99


def test_unknown_setting_is_refused():
    from django.test import override_settings

    with override_settings(DURABLE_WORKFLOWS={"LEASE_SECOND": 5}):
        with pytest.raises(AttributeError, match="LEASE_SECOND"):
            _ = settings.LEASE_SECONDS


def test_exports_match_all():
    assert sorted(durable_workflows.__all__) == sorted(set(durable_workflows._EXPORTS) | {"client"})
