"""Settings for bench/lists.py: the admin and the API, on DATABASE_URL."""

from bench.admin_settings import *  # noqa: F403
from bench.admin_settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework", "drf_spectacular"]
ROOT_URLCONF = "bench.lists_urls"
Q_CLUSTER = {"name": "bench-lists", "orm": "default", "sync": True}
