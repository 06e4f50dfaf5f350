"""Names a package exports without importing their modules until first use: the package stays
cheap to import, and a module below it can be imported without the rest (the engine's port,
which `durable_workflows.dispatch` builds on, is imported by the engine's own modules)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def exports(package: dict[str, Any], names: dict[str, str], modules: tuple[str, ...] = ()) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` (its `globals()`): each name of `names` is read from
    the module named beside it, each of `modules` is that module; once read, it stays."""
    def __getattr__(name: str) -> Any:
        if name in modules:
            value = import_module(f".{name}", package["__name__"])
        elif name in names:
            value = getattr(import_module(f".{names[name]}", package["__name__"]), name)
        else:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        package[name] = value
        return value

    return __getattr__
