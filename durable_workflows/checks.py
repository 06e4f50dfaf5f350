"""System checks for settings that work in development and fail under load."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLResolver, get_resolver

from .conf import DEFAULTS, WAKEUPS

#: Where our django-q2 dispatcher lives (and its first path, which settings may still name).
DJANGO_Q_DISPATCHERS = ("durable_workflows.djangoq.", "durable_workflows.tasks.")
#: The URLconfs of ours that are DRF views: mounted, they need rest_framework's templates.
DRF_URLCONFS = ("durable_workflows.api.urls", "durable_workflows.metrics.urls")


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    user = getattr(django_settings, "DURABLE_WORKFLOWS", {}) or {}
    if not isinstance(user, dict):
        return [checks.Error("DURABLE_WORKFLOWS must be a dict", id="durable_workflows.E001")]
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        messages.append(
            checks.Error(
                f"unknown key(s) in DURABLE_WORKFLOWS: {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(DEFAULTS))}",
                id="durable_workflows.E002",
            )
        )
    messages += _check_limiters(user.get("LIMITERS", DEFAULTS["LIMITERS"]))
    lease = user.get("LEASE_SECONDS", DEFAULTS["LEASE_SECONDS"])
    beat = user.get("HEARTBEAT_SECONDS", DEFAULTS["HEARTBEAT_SECONDS"])
    if beat >= lease:
        messages.append(
            checks.Error(
                "DURABLE_WORKFLOWS HEARTBEAT_SECONDS must be shorter than LEASE_SECONDS",
                hint="a lease that expires between heartbeats lets a second worker take over a live run",
                id="durable_workflows.E003",
            )
        )
    wakeup = user.get("WAKEUP", DEFAULTS["WAKEUP"])
    if wakeup not in WAKEUPS:
        messages.append(
            checks.Error(
                f"DURABLE_WORKFLOWS WAKEUP is {wakeup!r}, which is not one of: {', '.join(WAKEUPS)}",
                hint='"poll" looks for due work every ALARM_POLL_SECONDS and works on every database; '
                     '"notify" is accepted and polls for now',
                id="durable_workflows.E008",
            )
        )
    messages += _check_codec(user)
    alias = user.get("DATABASE", DEFAULTS["DATABASE"])
    if alias not in django_settings.DATABASES:
        messages.append(
            checks.Error(
                f"DURABLE_WORKFLOWS DATABASE is {alias!r}, which is not in DATABASES",
                hint=f"name one of: {', '.join(sorted(django_settings.DATABASES))}",
                id="durable_workflows.E004",
            )
        )
        return messages
    from .database import routed_elsewhere

    routed = routed_elsewhere()
    if routed is not None:
        messages.append(
            checks.Error(
                f"the project's routers send durable_workflows' tables to {routed!r}, but "
                f"DURABLE_WORKFLOWS DATABASE is {alias!r}",
                hint=f"set DURABLE_WORKFLOWS['DATABASE'] = {routed!r}: every query, transaction and "
                     "raw statement of the library goes to that one alias",
                id="durable_workflows.E005",
            )
        )
    database = django_settings.DATABASES.get(alias, {})
    q_cluster = getattr(django_settings, "Q_CLUSTER", {}) or {}
    if database.get("ENGINE", "").endswith("sqlite3") and not q_cluster.get("sync"):
        options = database.get("OPTIONS", {})
        if options.get("transaction_mode") != "IMMEDIATE":
            messages.append(
                checks.Warning(
                    "SQLite with qcluster workers: set OPTIONS transaction_mode to IMMEDIATE",
                    hint=f'DATABASES["{alias}"]["OPTIONS"] = {{"transaction_mode": "IMMEDIATE", '
                    '"timeout": 20}; with deferred transactions concurrent workers hit '
                    '"database is locked".',
                    id="durable_workflows.W001",
                )
            )
    return messages


def _check_codec(user: dict[str, Any]) -> list[checks.CheckMessage]:
    """A bad key found by the first value read or written would fail a run, or a page."""
    name = user.get("CODEC")
    if name is None:
        return []
    from .codecs import build

    try:
        build(name, user.get("CODEC_KEYS", DEFAULTS["CODEC_KEYS"]))
    except ImproperlyConfigured as exc:
        return [checks.Error(
            str(exc),
            hint="CODEC_KEYS lists Fernet keys, newest first: cryptography.fernet.Fernet.generate_key()",
            id="durable_workflows.E010",
        )]
    return []


def _check_limiters(value: Any) -> list[checks.CheckMessage]:
    """Each LIMITERS value is a rate: caught here rather than by the first step that uses it."""
    from .engine.limiters import MAX_NAME
    from .rates import parse_rate

    if not isinstance(value, dict):
        return [checks.Error(f"DURABLE_WORKFLOWS LIMITERS must be a dict of names to rates, got {value!r}",
                             hint='for example {"stripe": "25/s"}', id="durable_workflows.E011")]
    errors: list[checks.CheckMessage] = []
    for name, rate in value.items():
        try:
            if not isinstance(name, str) or not name or len(name) > MAX_NAME:
                raise ValueError(f"limiter name {name!r} must be text of 1 to {MAX_NAME} characters")
            parse_rate(rate, f"limiter {name!r}")
        except ValueError as error:
            errors.append(checks.Error(f"DURABLE_WORKFLOWS LIMITERS: {error}", hint='for example {"stripe": "25/s"}',
                                       id="durable_workflows.E011"))
    return errors


@checks.register()
def check_django_q_installed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The default dispatcher runs instances on django-q2, whose tables (the ORM broker's
    queue, its schedules) only `migrate` of its app creates: without it, migrate succeeds and
    the first start fails on a missing table."""
    user = getattr(django_settings, "DURABLE_WORKFLOWS", {}) or {}
    dispatcher = user.get("DISPATCHER", DEFAULTS["DISPATCHER"]) if isinstance(user, dict) else None
    name = dispatcher if isinstance(dispatcher, str) else f"{getattr(dispatcher, '__module__', '')}."
    if not name.startswith(DJANGO_Q_DISPATCHERS) or apps.is_installed("django_q"):
        return []
    return [checks.Error(
        '"django_q" is not in INSTALLED_APPS, and DURABLE_WORKFLOWS DISPATCHER runs workflows on django-q2',
        hint='add "django_q" to INSTALLED_APPS and run migrate (its tables hold the queue and the '
             "schedules), or name another DISPATCHER",
        id="durable_workflows.E006",
    )]


@checks.register(checks.Tags.urls)
def check_rest_framework_installed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The API and the metrics endpoint are DRF views, whose pages (a browser's GET, an error)
    render rest_framework's templates: mounted without the app, they answer 500."""
    if apps.is_installed("rest_framework"):
        return []
    mounted = sorted(_mounted(DRF_URLCONFS))
    return [checks.Error(
        f'"rest_framework" is not in INSTALLED_APPS, and the URLconf includes {name}',
        hint='add "rest_framework" to INSTALLED_APPS: its templates render the API\'s pages',
        id="durable_workflows.E007",
    ) for name in mounted]


def _mounted(names: tuple[str, ...]) -> set[str]:
    """Which of these URLconf modules the project's URLconf includes, however deep."""
    try:
        patterns = get_resolver().url_patterns
    except Exception:  # a broken URLconf is what Django's own URL checks report
        return set()
    found: set[str] = set()
    stack = list(patterns)
    while stack:
        pattern = stack.pop()
        if isinstance(pattern, URLResolver):
            module = getattr(pattern.urlconf_module, "__name__", pattern.urlconf_name)
            if module in names:
                found.add(module)
            stack.extend(pattern.url_patterns)
    return found


#: The backend of Django's tasks framework that this app provides.
TASK_BACKEND = "durable_workflows.tasks_backend.DurableTaskBackend"


@checks.register()
def check_tasks_framework(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A TASKS backend of ours needs Django's tasks framework: Django 5.2 ignores the setting
    without the backport, and the first enqueue would find no backend."""
    from .taskflow import available

    tasks = getattr(django_settings, "TASKS", None)
    if not isinstance(tasks, dict) or available():
        return []
    aliases = sorted(str(alias) for alias, config in tasks.items()
                     if isinstance(config, dict) and config.get("BACKEND") == TASK_BACKEND)
    return [checks.Error(
        f"TASKS[{alias!r}] names {TASK_BACKEND}, and Django's tasks framework is not installed",
        hint="django.tasks is in Django 6.0 and later; on Django 5.2 install the django-tasks backport: "
             "pip install 'django-durable-workflows[tasks]'",
        id="durable_workflows.E009",
    ) for alias in aliases]
