"""The package's layers, read from its source: the engine imports nothing that is built on it
(the admin, the API, the metrics, the task-queue glue), its modules import one another
without a circle, and no module grows past what one reader holds."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "durable_workflows"
ENGINE = "durable_workflows.engine"
#: Built on the engine: the engine never imports them, at any depth of a function.
ABOVE_THE_ENGINE = ("durable_workflows.admin", "durable_workflows.api", "durable_workflows.metrics",
                    "durable_workflows.djangoq", "durable_workflows.tasks", "durable_workflows.ticker",
                    "durable_workflows.lost_tasks", "durable_workflows.wedge", "django_q", "rest_framework")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.with_suffix("").relative_to(PACKAGE.parent).parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path, *, top_level_only: bool) -> Iterator[str]:
    """The modules `name` imports: with `top_level_only` those it imports when it is imported
    (not in a function, not under TYPE_CHECKING), else every import anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    if top_level_only:
        nodes: list[ast.AST] = []
        pending: list[ast.AST] = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                pending.extend(node.orelse)
                continue
            nodes.append(node)
            pending.extend(ast.iter_child_nodes(node))
    else:
        nodes = list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def test_relative_imports_are_read_as_the_modules_they_name():
    # The guards below are only as good as this: a relative import must not slip through.
    runs = set(_imports("durable_workflows.djangoq.runs", MODULES["durable_workflows.djangoq.runs"],
                        top_level_only=False))
    assert {"durable_workflows.djangoq.ticker", "durable_workflows.engine.clock", "django_q.conf"} <= runs
    checkpoint = set(_imports("durable_workflows.engine.checkpoint", MODULES["durable_workflows.engine.checkpoint"],
                              top_level_only=True))
    assert {"durable_workflows.engine.store", "durable_workflows.engine.events"} <= checkpoint


def test_the_engine_imports_nothing_built_on_it():
    reaches = sorted(
        f"{name} imports {target}"
        for name, path in MODULES.items() if name.startswith(ENGINE)
        for target in _imports(name, path, top_level_only=False)
        if target.startswith(ABOVE_THE_ENGINE)
    )
    assert reaches == []


def test_the_engine_modules_import_one_another_without_a_circle():
    graph = {
        name: {t for t in _imports(name, path, top_level_only=True) if t.startswith(ENGINE) and t != name}
        for name, path in MODULES.items() if name.startswith(ENGINE) and name != ENGINE
    }
    circles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append(trail[trail.index(name):] + [name])
            return
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, trail + [name])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [])
    assert circles == []


def test_no_module_outgrows_one_reader():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, "split these by what they hold"
