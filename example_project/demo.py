#!/usr/bin/env python
"""The whole demo in one command, from the repository root:

    .venv/bin/python example_project/demo.py

1. migrates the database (SQLite next to this file, unless DATABASE_URL says otherwise) and
   creates a demo superuser;
2. starts a real django-q2 worker (`manage.py qcluster`) in the background;
3. starts two orders (the second one's card is declined twice) and a nightly report, and
   prints every lifecycle event as it happens;
4. starts a third order, kills the worker with SIGKILL while it packs the parcel, starts a new
   worker, and shows the order finish: the steps that finished before the crash do not run
   again;
5. stops the worker and says how to open the admin.

Exits 0 when everything happened as described, 1 otherwise. Workers' output goes to a log
file (printed at the end).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"

import django  # noqa: E402

django.setup()
logging.getLogger("django-q").setLevel(logging.WARNING)  # its "Enqueued" lines drown the events

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from durable_workflows import client  # noqa: E402
from durable_workflows.admin.display import humanize_seconds, relative  # noqa: E402
from durable_workflows.engine.eventlog import LoggedEvent, event_log  # noqa: E402
from durable_workflows.engine.schedules import statuses  # noqa: E402
from durable_workflows.models import StepRecord, WorkflowInstance  # noqa: E402

PHASE_TIMEOUT = 45.0  # seconds; each phase takes well under 15 on a laptop
QUIET_EVENTS = {"workflow.queued", "timeout.set", "sleep.completed"}
DEMO_USER, DEMO_PASSWORD = "admin", "admin"


class DemoFailed(Exception):
    """Something did not happen as the demo says it will."""


class Worker:
    """`manage.py qcluster` in its own process group: killing the group kills the cluster
    and every worker process it forked, as a crash or an OOM kill would."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> int:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(HERE / "manage.py"), "qcluster"],
                cwd=HERE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye: no task is finished, no lease is handed back."""
        self._signal_group(signal.SIGKILL)
        assert self.process is not None
        self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the cluster to stop, then make sure none of its processes is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Feed:
    """Prints the lifecycle events of the demo's instances as the workers record them."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.labels: dict[str, str] = {}
        self.shown: set[tuple[str, str, int | None, object]] = set()

    def follow(self, instance_id: str, label: str) -> None:
        self.labels[instance_id] = label

    def poll(self) -> None:
        # Each instance's log in the order things happened; an entry is known by what it is
        # and when it happened, so each is shown once.
        for instance_id, label in self.labels.items():
            if not WorkflowInstance.objects.filter(pk=instance_id).exists():
                continue
            for event in event_log(instance_id)[0]:
                key = (instance_id, event.kind, event.position, event.at)
                if key in self.shown:
                    continue
                self.shown.add(key)
                if event.kind not in QUIET_EVENTS:
                    say(f"{self.elapsed():>7}  {label:<14} {event.kind:<19} {describe(event)}")

    def elapsed(self) -> str:
        return f"+{time.monotonic() - self.started:.1f}s"


def describe(event: LoggedEvent) -> str:
    data = event.data or {}
    name = data.get("name", "")
    if event.kind == "step.started" and data.get("attempt", 1) > 1:
        return f"{name} (attempt {data['attempt']})"
    if event.kind == "step.failed":
        return f"{name}: {data.get('error', '')}"
    if event.kind == "retry.scheduled":
        return f"{name}: attempt {data.get('attempt')} in {humanize_seconds(float(data.get('delay', 0)))}"
    if event.kind == "sleep.started":
        until = data.get("until")
        return f"{name}, until {until[11:19]} UTC" if until else name
    if event.kind == "workflow.paused":
        until = data.get("until")
        return f"until {until[11:19]} UTC ({data.get('reason', '')})" if until else f"({data.get('reason', '')})"
    if event.kind == "child.started":
        return f"{name} {data.get('child', '')}"
    if event.kind == "workflow.recovered":
        return "a new worker took over the abandoned run"
    if event.kind == "workflow.failed":
        return data.get("error", "")
    return name


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text}")


def wait(what: str, condition: Callable[[], bool], feed: Feed, worker: Worker,
         timeout: float = PHASE_TIMEOUT) -> None:
    """Poll until `condition` holds, printing events meanwhile; fail loudly after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        feed.poll()
        if condition():
            feed.poll()
            return
        if not worker.alive():
            raise DemoFailed(f"the worker exited while waiting for {what}:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def asleep_until_two(instance_id: str) -> bool:
    """The report has its regions' totals (from its child workflows) and sleeps until 02:00."""
    return StepRecord.objects.filter(instance_id=instance_id, kind="sleep", state="sleeping").exists()


def waiting_for_payment(instance_id: str) -> bool:
    return StepRecord.objects.filter(instance_id=instance_id, kind="event", state="awaiting").exists()


def state(instance_id: str) -> str:
    return WorkflowInstance.objects.filter(pk=instance_id).values_list("state", flat=True).first() or ""


def migrate() -> None:
    database = settings.DATABASES["default"]
    where = database["NAME"] if database["ENGINE"].endswith("sqlite3") else database["ENGINE"]
    heading(f"1. Database: migrating {where}")
    began = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    users = get_user_model().objects
    if not users.filter(username=DEMO_USER).exists():
        users.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
    say(f"   done in {time.monotonic() - began:.1f} s; admin user {DEMO_USER!r}, password {DEMO_PASSWORD!r}")


def run_orders_and_report(feed: Feed, worker: Worker, tag: str) -> list[str]:
    heading(f"2. A worker (pid {worker.pid}) runs two orders and a nightly report")
    ids = {
        "order 1001": client.start("shop.order", "1001", instance_id=f"order-1001-{tag}").instance_id,
        "order 1002": client.start(
            "shop.order", "1002", declines=2, instance_id=f"order-1002-{tag}"
        ).instance_id,
        "report": client.start(
            "shop.nightly_report", timezone.now().date().isoformat(), instance_id=f"report-{tag}"
        ).instance_id,
    }
    for label, instance_id in ids.items():
        feed.follow(instance_id, label)
    say("   order 1002's card is declined twice: watch it retry. The report starts a child workflow")
    say("   per region, waits for all of them, and sleeps until 02:00.")
    orders = [ids["order 1001"], ids["order 1002"]]
    wait("both orders to wait for their payment", lambda: all(waiting_for_payment(i) for i in orders),
         feed, worker)
    say("   The payment provider's webhook confirms both payments; it delivers 1001's twice.")
    for instance_id in orders + [ids["order 1001"]]:
        number = instance_id.split("-")[1]
        accepted = client.send_event(instance_id, "payment confirmed", {"reference": f"PAY-{number}"},
                                     event_id=f"psp-delivery-{number}")
        say(f"   send_event({instance_id!r}, 'payment confirmed', event_id='psp-delivery-{number}')"
            f" -> {accepted}{'' if accepted else ': a repeat, ignored'}")
    wait(
        "both orders to complete and the report to sleep",
        lambda: state(ids["order 1001"]) == state(ids["order 1002"]) == "completed"
        and asleep_until_two(ids["report"]),
        feed, worker,
    )
    return list(ids.values())


def crash_and_recover(feed: Feed, worker: Worker, tag: str) -> str:
    heading("3. Crash test: kill the worker in the middle of a step")
    instance_id = client.start(
        "shop.order", "1003", pack_seconds=4, instance_id=f"order-1003-{tag}"
    ).instance_id
    feed.follow(instance_id, "order 1003")
    # Sent before the order reaches its wait: the event is kept until the wait takes it.
    client.send_event(instance_id, "payment confirmed", {"reference": "PAY-1003"}, event_id="psp-delivery-1003")
    packing = StepRecord.objects.filter(instance_id=instance_id, name="Pack parcel", state="running")
    wait("order 1003 to start packing its parcel", packing.exists, feed, worker)
    time.sleep(1.0)  # let it get properly stuck in: the crash is mid-step, not at its edge
    killed_at = timezone.now()
    old_pid = worker.pid
    worker.kill()
    instance = WorkflowInstance.objects.get(pk=instance_id)
    say(f"   SIGKILL to worker pid {old_pid} while 'Pack parcel' runs. The database still says "
        f"{instance.get_state_display()}; its lease expires {relative(instance.lease_expires_at)}.")
    new_pid = worker.start()
    say(f"   A new worker (pid {new_pid}) starts; it takes the run over once that lease expires.")
    wait("order 1003 to complete after the crash", lambda: state(instance_id) == "completed", feed, worker)
    report_runs(instance_id, killed_at)
    return instance_id


def report_runs(instance_id: str, killed_at) -> None:
    """How many times each step ran, from the event log: proof of where the run resumed."""
    # A step is known by its branch (empty outside wf.parallel) and its position in it.
    starts = Counter(
        (event.data.get("branch", ""), event.position)
        for event in event_log(instance_id)[0] if event.kind == "step.started"
    )
    say()
    say("   How often each step of order 1003 ran:")
    for record in sorted(StepRecord.objects.filter(instance_id=instance_id), key=lambda r: r.sort_key):
        if record.kind == "sleep":
            say(f"     {record.name:<24} {'slept once':<12} finished before the crash")
            continue
        if record.kind == "event":
            say(f"     {record.name:<24} {'taken once':<12} the event sent before the order waited")
            continue
        runs = starts[record.slot]
        before = record.finished_at is not None and record.finished_at < killed_at
        note = "finished before the crash: not run again" if before else ""
        if runs > 1:
            note = "interrupted by the crash, run again by the new worker"
        times = f"ran {runs} time{'s' if runs != 1 else ''}"
        say(f"     {record.name:<24} {times:<12} {note}".rstrip())
    fetches = starts[("", 0)]
    packs = StepRecord.objects.get(instance_id=instance_id, name="Pack parcel")
    if fetches != 1 or starts[packs.slot] != 2:
        raise DemoFailed(
            f"expected 'Fetch order' to run once and 'Pack parcel' twice, got {fetches} and "
            f"{starts[packs.slot]}"
        )


def summary(instance_ids: list[str]) -> None:
    heading("4. Where everything stands")
    for instance_id in instance_ids:
        handle = client.get(instance_id)
        if handle.state == "completed":
            detail = f"result {handle.result()}"
        elif handle.alarm is not None:
            detail = f"resumes {relative(handle.alarm.fire_at)}"
        else:
            detail = str(handle.error or "")
        say(f"   {instance_id:<22} {handle.state.label:<10} {detail}")
    for schedule in statuses():
        last = (f"the workers started {schedule.last_instance_id} ({schedule.last_state}) for its last fire time"
                if schedule.last_instance_id else "it has not fired yet")
        say(f"   {schedule.workflow} runs on its schedule ({schedule.schedule}), next "
            f"{relative(schedule.next_fire_at)}; {last}.")


def main() -> int:
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = Path(tempfile.gettempdir()) / f"durable-workflows-demo-{stamp}-{os.getpid()}.log"
    migrate()
    # Each run starts its own instances, so the demo can be run again on the same database.
    tag = f"run{WorkflowInstance.objects.filter(workflow='shop.nightly_report', pk__startswith='report-').count() + 1}"
    worker = Worker(log_path)
    worker.start()
    try:
        feed = Feed(time.monotonic())
        ids = run_orders_and_report(feed, worker, tag)
        ids.append(crash_and_recover(feed, worker, tag))
        summary(ids)
    except DemoFailed as error:
        say(f"\nThe demo failed: {error}\nWorker log: {log_path}")
        return 1
    finally:
        worker.stop()
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    heading(f"5. Done in {time.monotonic() - started:.0f} s. See it all in the admin:")
    say(f"   {python} example_project/manage.py runserver")
    say(f"   then open http://127.0.0.1:8000/admin/ and log in as {DEMO_USER} / {DEMO_PASSWORD}.")
    say(f"   Run `{python} example_project/manage.py qcluster` beside it to keep workflows moving.")
    say(f"   Worker log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
