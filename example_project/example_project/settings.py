"""Settings for the example project: SQLite and django-q2's ORM broker, no service to start.

Switch with environment variables:
- DATABASE_URL=postgres://user@host:5432/name   PostgreSQL instead of SQLite
- REDIS_URL=redis://127.0.0.1:6379/0            the Redis broker instead of the ORM broker
- SQLITE_PATH=/tmp/demo.sqlite3                  where the SQLite database lives
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_q",
    "durable_workflows",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    import dj_database_url

    # Workers poll the database all the time: keep their connections open and checked.
    DATABASES = {
        "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH") or BASE_DIR / "db.sqlite3",
            # Several processes write at once (the web server, each worker): take the write
            # lock when a transaction starts, and wait for it rather than fail.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }

REDIS_URL = os.environ.get("REDIS_URL", "")
Q_CLUSTER = {
    "name": "example",
    "workers": 2,
    "timeout": 60,  # longer than any step here
    "retry": 90,  # must exceed timeout
    "catch_up": False,
    **({"redis": REDIS_URL} if REDIS_URL else {"orm": "default"}),
}

DURABLE_WORKFLOWS = {
    # Short, so that the demo's killed worker is noticed within seconds. The defaults (30 s
    # and 10 s) suit production, where a step may stall for a while without being abandoned.
    "LEASE_SECONDS": 4,
    "HEARTBEAT_SECONDS": 1,
    "REDISPATCH_AFTER_SECONDS": 10,
}

REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {"TITLE": "Example shop workflows API"}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The workers' log (the demo prints where it is) shows what the engine says, tickers included.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"durable_workflows": {"handlers": ["stderr"], "level": "INFO"}},
}
