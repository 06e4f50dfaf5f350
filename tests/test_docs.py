"""The documentation as a reader uses it: every Python sample runs, or says it is a fragment,
and every public name the pages mention still exists.

A page's Python blocks run in order in one namespace, as a reader would type them into one
module, against the test project; `test_*` functions a page defines are then called, with
`db` and `durable` standing for the fixtures of those names. A block that is not meant to run
(settings, a URLconf, code calling functions of the reader's own) is preceded by the line
`<!-- fragment -->` (optionally `<!-- fragment: why -->`): it must still compile, and the
names it imports from durable_workflows must exist. docs/contributing.md says the same.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import durable_workflows
from durable_workflows import client, registry
from durable_workflows.engine.context import WorkflowContext

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)])
FENCE = re.compile(r"^(?P<marker><!-- fragment(?::[^>]*)? -->\n)?```(?P<lang>python|py)\n(?P<code>.*?)^```$",
                   re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    page: Path
    line: int
    code: str
    fragment: bool

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [Block(page, text.count("\n", 0, m.start("code")) + 1, m["code"], bool(m["marker"]))
            for m in FENCE.finditer(text)]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


RUNNABLE = [p for p in PAGES if any(not b.fragment for b in blocks(p))]


def test_the_docs_have_samples_that_run():
    """The tutorial and the testing how-to, at least, are run rather than marked."""
    names = {_name(p) for p in RUNNABLE}
    assert {"docs/tutorial.md", "docs/howto/testing.md"} <= names, names


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_the_python_samples_of_a_page_run(page, request):
    before = set(registry._registry)
    namespace: dict = {"__name__": "docs_" + re.sub(r"\W", "_", _name(page).removesuffix(".md"))}
    try:
        for block in blocks(page):
            if block.fragment:
                continue
            defined = set(namespace)
            exec(compile(block.code, str(block), "exec"), namespace)  # noqa: S102
            for name in [n for n in namespace if n.startswith("test_") and n not in defined]:
                test = namespace[name]
                fixtures = {"db": None} | (
                    {"durable": request.getfixturevalue("durable")}
                    if "durable" in inspect.signature(test).parameters else {})
                test(**{p: fixtures[p] for p in inspect.signature(test).parameters})
    finally:
        for name in set(registry._registry) - before:
            registry.unregister(name)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_fragment_compiles(page):
    for block in blocks(page):
        if block.fragment:
            compile(block.code, str(block), "exec")


IMPORT = re.compile(r"^\s*from (durable_workflows[\w.]*) import \(?([\w, \n]+?)\)?(?:\s*#.*)?$", re.MULTILINE)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_names_imported_from_durable_workflows_exist(page):
    missing = []
    for block in blocks(page):
        for module, names in IMPORT.findall(block.code):
            imported = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",")):
                if name and not hasattr(imported, name):
                    try:
                        importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        missing.append(f"{block}: from {module} import {name}")
    assert not missing, missing


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


CODE_SPAN = re.compile(r"`([^`\n]+)`")
MENTION = re.compile(r"(?<![\w.])((?:durable_workflows(?:\.\w+)+)|(?:client|wf)\.\w+)")


FENCED = re.compile(r"^```.*?^```$", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_public_names_the_prose_mentions_exist(page):
    """`client.x`, `wf.x` and `durable_workflows.x.y` in the text name something real."""
    missing = set()
    spans = CODE_SPAN.findall(FENCED.sub("", page.read_text()))
    for mention in (m for span in spans for m in MENTION.findall(span)):
        head, _, rest = mention.partition(".")
        if head == "client":
            ok = hasattr(client, rest.split(".")[0])
        elif head == "wf":
            ok = hasattr(WorkflowContext, rest.split(".")[0]) or rest in ("instance_id", "mode")
        elif re.fullmatch(r"durable_workflows\.(?:[EW]\d{3}|\w+_workflowinstance)", mention):
            ok = True  # a system check's id, or a permission's codename
        else:
            ok = _resolves(mention)
        if not ok:
            missing.add(mention)
    assert not missing, f"{_name(page)} mentions names that do not exist: {sorted(missing)}"


def test_every_public_name_is_in_the_reference():
    api = (DOCS / "reference" / "api.md").read_text()
    documented = set(re.findall(r"^\.\. auto\w+:: durable_workflows\.(\w+)$", api, re.MULTILINE))
    documented |= {"client"} if ".. automodule:: durable_workflows.client" in api else set()
    assert set(durable_workflows.__all__) <= documented, sorted(set(durable_workflows.__all__) - documented)


def test_every_lifecycle_event_and_its_signal_is_in_the_reference():
    from durable_workflows.signals import EVENT_NAMES, SIGNALS

    page = (DOCS / "reference" / "signals.md").read_text()
    missing = [name for name in EVENT_NAMES
               if f"| `{name}` | `{name.replace('.', '_')}` |" not in page]
    assert not missing, f"docs/reference/signals.md has no row for {missing}"
    assert set(SIGNALS) == set(EVENT_NAMES)


def test_every_sub_command_is_in_the_reference():
    import argparse

    from durable_workflows.management.commands.durable_workflows import Command

    parser = Command().create_parser("manage.py", "durable_workflows")
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    page = (DOCS / "reference" / "commands.md").read_text()
    missing = [name for name in subs.choices if f"`manage.py durable_workflows {name}" not in page]
    assert not missing, f"docs/reference/commands.md has no entry for {missing}"


def test_every_operation_of_the_schema_is_described_on_the_rest_api_page():
    """The page's table is written by hand; the schema says what the code serves."""
    from drf_spectacular.generators import SchemaGenerator

    from durable_workflows.api import urls

    schema = SchemaGenerator(patterns=urls.urlpatterns).get_schema(request=None, public=True)
    page = (DOCS / "reference" / "rest-api.md").read_text()
    missing = [f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item
               if f"| `{method.upper()} {path.lstrip('/').replace('{instance_id}', '{id}')}` |" not in page]
    assert not missing, f"docs/reference/rest-api.md does not describe {missing}"
