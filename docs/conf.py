"""Sphinx configuration of the documentation site.

The pages are Markdown (MyST). The reference imports the package, so Django is set up first,
with the few apps the package needs and no database file (the docs extra installs nothing
else); the REST API page is generated from the OpenAPI schema at build time, so that it cannot
drift from the code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured and "DJANGO_SETTINGS_MODULE" not in os.environ:
    settings.configure(
        SECRET_KEY="docs-only",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "rest_framework",
                        "drf_spectacular", "django_q", "durable_workflows"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        REST_FRAMEWORK={"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"},
        Q_CLUSTER={"name": "docs", "orm": "default", "timeout": 300, "retry": 360},
    )
django.setup()

import durable_workflows  # noqa: E402

project = "django-durable-workflows"
copyright = "the django-durable-workflows authors"
release = durable_workflows.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "_ext.openapi",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "**/_generated_*.md", "README.md"]

myst_enable_extensions = ["colon_fence", "deflist"]
# Headings get anchors, so pages link to a section with page.md#section-title.
myst_heading_anchors = 3

# Docstrings write code between single backticks, as Markdown does.
default_role = "code"

autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = "django-durable-workflows"
html_static_path: list[str] = []
linkcheck_ignore = [r"http://localhost:\d+/", r"http://127\.0\.0\.1:\d+/"]
linkcheck_timeout = 10
