"""A directive that renders the REST API's OpenAPI document as a table of its operations.

The schema comes from drf-spectacular's generator over `durable_workflows.api.urls`, run at
build time, so the page shows the endpoints the code serves today.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

METHODS = ("get", "post", "put", "patch", "delete")


def schema() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    from durable_workflows.api import urls

    generator = SchemaGenerator(patterns=urls.urlpatterns)
    # drf-spectacular prints its notes on naming to stderr; the page needs only the document.
    with contextlib.redirect_stderr(io.StringIO()):
        return generator.get_schema(request=None, public=True)


def _text(value: str) -> nodes.Node:
    """A paragraph of `value`, its `backticked` parts as code, as the schema writes them."""
    paragraph = nodes.paragraph()
    for index, part in enumerate(value.split("`")):
        if part:
            paragraph += nodes.literal(text=part) if index % 2 else nodes.Text(part)
    return paragraph


def _row(*cells: nodes.Node) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += cell
        row += entry
    return row


class OpenAPIOperations(SphinxDirective):
    """``{openapi-operations}``: one row per operation: method and path, summary, answers."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        document = schema()
        table = nodes.table(classes=["openapi"])
        group = nodes.tgroup(cols=3)
        for width in (30, 45, 25):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row(_text("operation"), _text("description"), _text("status codes"))
        body = nodes.tbody()
        for path, item in document["paths"].items():
            for method in METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                described = operation.get("description") or operation.get("summary") or ""
                codes = ", ".join(sorted(operation.get("responses", {})))
                body += _row(nodes.paragraph("", "", nodes.literal(text=f"{method.upper()} {path}")),
                             _text(" ".join(described.split())), _text(codes))
        group += head
        group += body
        table += group
        return [table]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("openapi-operations", OpenAPIOperations)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
