"""Settings for the benchmarks: DATABASE_URL picks PostgreSQL, otherwise a SQLite file."""

import os
import tempfile

import dj_database_url

SECRET_KEY = "bench-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_q",
    "durable_workflows",
]
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=600)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(tempfile.gettempdir(), "dw_bench.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
Q_CLUSTER = {"name": "bench", "orm": "default", "sync": True}
DURABLE_WORKFLOWS = {"DISPATCHER": "durable_workflows.dispatch.InlineDispatcher"}
