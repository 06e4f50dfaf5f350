"""Guards: migrations complete, every setting documented (docs/reference/settings.md), public
names exported, the engine free of django-q2."""

import ast
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


# What the engine must not import: django-q2, our glue for it, and the first paths of that glue.
NOT_FOR_THE_ENGINE = ("django_q", "durable_workflows.djangoq", "durable_workflows.tasks",
                      "durable_workflows.lost_tasks", "durable_workflows.ticker", "durable_workflows.wedge")


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, anywhere in it (a function's own imports too), by
    its absolute name; `from a import b` counts as a and as a.b, b being maybe a module."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rpartition(".")[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_imported_modules_resolves_relative_imports():
    # The guard below is only as good as this: a relative import must not slip through.
    runs = imported_modules(PACKAGE / "djangoq" / "runs.py")
    assert {"durable_workflows.djangoq.ticker", "durable_workflows.engine.clock", "django_q.conf"} <= runs
    assert "durable_workflows.engine.events" in imported_modules(PACKAGE / "engine" / "__init__.py")
    assert "durable_workflows.djangoq" in imported_modules(PACKAGE / "scheduling.py")


@pytest.mark.parametrize("path", sorted((PACKAGE / "engine").rglob("*.py")), ids=lambda path: path.name)
def test_the_engine_imports_nothing_of_django_q(path):
    """The engine sees the task queue only through its port (engine/ports.py): a project
    runs it with a dispatcher of its own, without django-q2 installed."""
    wrong = sorted(name for name in imported_modules(path)
                   if any(name == banned or name.startswith(f"{banned}.") for banned in NOT_FOR_THE_ENGINE))
    assert not wrong, f"durable_workflows/engine/{path.relative_to(PACKAGE / 'engine')} imports {', '.join(wrong)}"
