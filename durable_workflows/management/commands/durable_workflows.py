"""`manage.py durable_workflows <sub-command>`: start, list, show, pause, cancel and maintain instances
from a shell, for operators and deploy scripts.

Each sub-command parses its arguments, calls the client or the engine, and prints the outcome.
Bad arguments, an unknown id or workflow and a refused transition end in `CommandError`, so
the process exits non-zero with a message that says what was wrong.
"""

from __future__ import annotations

import json
import math
import os
import signal
from argparse import ArgumentParser
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from durable_workflows import bulk as bulk_actions
from durable_workflows import client
from durable_workflows.durations import parse_duration
from durable_workflows.engine import (
    clock,
    concurrency,
    fire_alarms,
    fire_schedules,
    ratelimit,
    recover,
)
from durable_workflows.engine.retention import delete_in_batches
from durable_workflows.engine.schedules import statuses
from durable_workflows.exceptions import (
    CodecError,
    InvalidTransition,
    SerializationError,
    UnknownWorkflow,
    WorkflowIdConflict,
    WorkflowNotFound,
)
from durable_workflows.management.filter_options import add_filter_arguments, filters_of
from durable_workflows.models import WorkflowInstance
from durable_workflows.nesting import MAX_NESTING, TooDeep, check_nesting
from durable_workflows.registry import get_definition
from durable_workflows.rotation import rotate_keys
from durable_workflows.serialization import decode_input
from durable_workflows.states import TERMINAL, State, as_state

FINISHED = ", ".join(sorted(state.value for state in TERMINAL))


class Command(BaseCommand):
    help = "Start, inspect, pause, resume, cancel and maintain durable workflow instances."

    def add_arguments(self, parser: ArgumentParser) -> None:
        subs = parser.add_subparsers(dest="sub", metavar="<sub-command>", required=True)

        start = subs.add_parser("start", help="Start an instance of a registered workflow.")
        start.add_argument("workflow", metavar="NAME", help="The registered workflow name.")
        start.add_argument(
            "--input", default=None, metavar="JSON",
            help="A JSON object (keyword arguments) or array (positional arguments).",
        )
        start.add_argument("--id", default=None, metavar="ID",
                           help="Instance id; starting the same id again does nothing.")
        start.add_argument("--priority", type=int, default=None, metavar="N",
                           help="-100 to 100, larger first, among instances waiting for a slot.")
        start.add_argument("--delay", default=None, metavar="DURATION",
                           help='Start after this long, e.g. "5m", "2 hours".')
        start.add_argument("--wait", action="store_true", help="Wait for it to finish and print its result.")
        start.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                           help="With --wait: give up after this long (default: wait as long as it takes).")

        listing = subs.add_parser("list", help="List instances, newest first.")
        add_filter_arguments(listing)
        listing.add_argument("--limit", type=int, default=50, help="At most this many rows (default 50).")

        show = subs.add_parser("show", help="One instance: its state, input, outcome and steps.")
        show.add_argument("instance_id", metavar="ID")

        cancel = subs.add_parser("cancel", help="Cancel an instance that has not finished.")
        cancel.add_argument("instance_id", metavar="ID")
        cancel.add_argument("--reason", default="", help="Kept on the instance.")

        pause = subs.add_parser("pause", help="Hold an instance: nothing starts or resumes it until resume.")
        pause.add_argument("instance_id", metavar="ID")
        pause.add_argument("--reason", default="", help="Kept on the instance while it is held.")
        resume = subs.add_parser("resume", help="End the hold of a paused instance; it runs on if something came due.")
        resume.add_argument("instance_id", metavar="ID")

        send = subs.add_parser("send-event", help="Send an event to an instance (what wf.wait_for_event takes).")
        send.add_argument("instance_id", metavar="ID")
        send.add_argument("name", metavar="NAME", help="The event name the workflow waits for.")
        send.add_argument("--payload", default=None, metavar="JSON", help="The event's payload (JSON; default null).")
        send.add_argument("--event-id", default=None, metavar="KEY",
                          help="Sending the same key to the same instance again does nothing.")

        subs.add_parser("recover", help="Re-run instances whose worker died; re-send lost tasks.")

        fire = subs.add_parser("fire-alarms", help="Resume the paused instances whose alarm is due.")
        fire.add_argument("--limit", type=int, default=500, help="At most this many (default 500).")

        ticking = subs.add_parser(
            "ticker", help="Do the periodic work (alarms, recovery, schedules, retention) in the foreground "
                           "until SIGTERM or SIGINT, for workers that are not django-q2's.")
        ticking.add_argument("--name", default="default",
                             help="The cluster name: one ticker of a name holds its lease (default: default).")

        subs.add_parser("setup", help="Create the django-q2 schedules that back up alarms and recovery.")

        schedules = subs.add_parser(
            "schedules", help="The workflows with a schedule: when each runs next and what it started last.")
        schedules.add_argument("--fire", action="store_true",
                               help="First start those that are due now, as a worker's pass would.")

        forking = subs.add_parser(
            "fork", help="A new instance that replays ID's records before a position and runs the rest "
                         "under the code installed now (to repair a failed instance after a fix).")
        forking.add_argument("instance_id", metavar="ID")
        forking.add_argument("--from", dest="from_position", type=int, default=None, metavar="N",
                             help="Copy the records before position N (default: before the first failed or "
                                  "unfinished one).")
        forking.add_argument("--id", dest="new_id", default=None, metavar="NEW_ID", help="The new instance's id.")

        bulk = subs.add_parser(
            "bulk", help="Do ACTION to every instance the filters select (at least one filter), "
                         "a chunk at a time; prints how many took it.")
        bulk.add_argument("action", metavar="ACTION", help=f"One of: {', '.join(sorted(bulk_actions.ACTIONS))}.")
        add_filter_arguments(bulk)
        bulk.add_argument("--reason", default="", help="Kept on the instances (a cancel's reason).")

        check = subs.add_parser(
            "check", help="Replay every unfinished instance against the code installed now; exit 1 "
                          "if any would fail. Runs no step and writes nothing: run it before a deploy.")
        check.add_argument("--workflow", default=None, metavar="NAME", help="Only this workflow's instances.")

        purge = subs.add_parser("purge", help=f"Delete finished instances ({FINISHED}).")
        purge.add_argument("--older-than", required=True, metavar="DURATION",
                           help='Finished longer ago than this, e.g. "30d", "12 hours".')
        purge.add_argument("--state", default=None, help=f"Only this finished state ({FINISHED}).")
        purge.add_argument("--batch-size", type=int, default=500, help="Rows deleted per transaction.")
        purge.add_argument("--dry-run", action="store_true", help="Count what would go; delete nothing.")

        rotate = subs.add_parser(
            "rotate-keys", help="Encrypt every stored value again with the newest key of CODEC_KEYS "
                                "(then the older keys can go); safe while workers run.")
        rotate.add_argument("--chunk-size", type=int, default=500, help="Rows per transaction (default 500).")
        rotate.add_argument("--dry-run", action="store_true", help="Count what would be rewritten; write nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        handler = getattr(self, "do_" + options["sub"].replace("-", "_"))
        try:
            handler(options)
        except (WorkflowNotFound, UnknownWorkflow, InvalidTransition, SerializationError,
                WorkflowIdConflict, CodecError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None

    # -- sub-commands --------------------------------------------------------------------------

    def do_rotate_keys(self, options: dict[str, Any]) -> None:
        try:
            done = rotate_keys(chunk_size=options["chunk_size"], dry_run=options["dry_run"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        verb = "Would rewrite" if options["dry_run"] else "Rewrote"
        detail = ", ".join(f"{label}: {count}" for label, count in done.counts.items())
        self.stdout.write(f"{verb} {done.total} values under the newest key ({detail}).")

    def do_start(self, options: dict[str, Any]) -> None:
        timeout = options["timeout"]
        if timeout is not None and not 0 <= timeout < float("inf"):  # NaN fails it too
            raise CommandError(f"--timeout must be a number of seconds, 0 or more, got {timeout:g}")
        args, kwargs = parse_input(options["input"])
        instance_id = options["id"]
        try:
            handle = client.start_with(options["workflow"], args, kwargs, instance_id,
                                       priority=options["priority"], delay=options["delay"])
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        verb = "Started" if handle.created else "Already exists"
        self.stdout.write(f"{verb}: {handle.workflow} {handle.instance_id} ({handle.state.label})")
        if not options["wait"]:
            return
        handle.wait(options["timeout"])
        if not handle.is_finished:
            raise CommandError(
                f"instance {handle.instance_id!r} is still {handle.state.label} after "
                f"{options['timeout']:g} s; it goes on without you"
            )
        if handle.state == State.COMPLETED:
            self.stdout.write(self.style.SUCCESS(f"Completed: {as_json(handle.result())}"))
            return
        self.stdout.write(describe_outcome(handle.instance, traceback=False))
        raise CommandError(f"instance {handle.instance_id!r} ended {handle.state.label}")

    def do_list(self, options: dict[str, Any]) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        handles = client.list(limit=options["limit"], **filters_of(options))
        rows = [
            (h.instance_id, h.workflow, h.state.label, when(h.instance.created_at), when(h.instance.finished_at))
            for h in handles
        ]
        if not rows:
            workflow = options["workflow"]
            if workflow is not None and not WorkflowInstance.objects.filter(workflow=workflow).exists():
                # Nothing registered nor stored under that name: most likely a typo.
                get_definition(workflow)
            self.stdout.write("No instances.")
            return
        self.stdout.write(table(("ID", "WORKFLOW", "STATE", "CREATED", "FINISHED"), rows))

    def do_show(self, options: dict[str, Any]) -> None:
        handle = client.get(options["instance_id"])
        instance = handle.instance
        lines = [
            f"Instance  {instance.pk}",
            f"Workflow  {instance.workflow}",
            f"State     {handle.state.label}",
            f"Created   {when(instance.created_at)}",
            f"Started   {when(instance.started_at)}",
            f"Finished  {when(instance.finished_at)}",
            f"Runs      {instance.run_count}",
            f"Generation {instance.generation} (since {when(instance.generation_started_at)})"
            if instance.generation else "",
            f"Input     {as_json(input_of(instance))}",
        ]
        alarm = handle.alarm
        if alarm is not None and handle.state == State.PAUSED:
            lines.append(f"Resumes   {resumes(alarm.fire_at)} ({alarm.get_reason_display().lower()})")
        if instance.cancel_requested and not handle.is_finished:
            lines.append("Cancel    requested; it stops at its next step")
        if handle.held:
            lines.append(f"Held      {handle.held_reason or 'yes'} (until `resume`)")
        lines.extend(held_back(instance, handle.state))
        lines.append(describe_outcome(instance))
        self.stdout.write("\n".join(line for line in lines if line))
        rows = [
            (
                f"{step.branch}/{step.position}" if step.branch else str(step.position), step.name, step.kind, step.state, str(step.attempts),
                when(step.started_at), duration(step.started_at, step.finished_at),
                shorten(step_outcome(step)),
            )
            for step in handle.steps
        ]
        self.stdout.write("")
        if rows:
            self.stdout.write(table(("#", "NAME", "KIND", "STATE", "ATTEMPTS", "STARTED", "DURATION", "RESULT"), rows))
        else:
            self.stdout.write("No steps yet.")

    def do_send_event(self, options: dict[str, Any]) -> None:
        payload = None
        if options["payload"] is not None:
            payload = parse_json(options["payload"], "--payload")
        try:
            accepted = client.send_event(options["instance_id"], options["name"], payload,
                                         event_id=options["event_id"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if accepted:
            self.stdout.write(self.style.SUCCESS(f"Sent {options['name']!r} to {options['instance_id']}."))
        else:
            self.stdout.write(f"Already received: {options['instance_id']} has event id {options['event_id']!r}; nothing sent.")

    def do_cancel(self, options: dict[str, Any]) -> None:
        handle = client.cancel(options["instance_id"], reason=options["reason"])
        if handle.state == State.CANCELLED:
            self.stdout.write(self.style.SUCCESS(f"Cancelled {handle.instance_id}."))
        else:
            self.stdout.write(
                f"Cancel requested for {handle.instance_id} ({handle.state.label}): "
                f"it stops at its next step."
            )

    def do_pause(self, options: dict[str, Any]) -> None:
        handle = client.pause(options["instance_id"], reason=options["reason"])
        then = "it stops before its next step" if handle.state == State.RUNNING else "nothing runs it until `resume`"
        self.stdout.write(self.style.SUCCESS(f"Paused {handle.instance_id} ({handle.state.label}): {then}."))

    def do_resume(self, options: dict[str, Any]) -> None:
        held = client.get(options["instance_id"]).held
        handle = client.resume(options["instance_id"])
        if held:
            self.stdout.write(self.style.SUCCESS(f"Resumed {handle.instance_id}; it is {handle.state.label} now."))
        else:
            self.stdout.write(f"{handle.instance_id} is not paused by an operator ({handle.state.label}); nothing to do.")

    def do_recover(self, options: dict[str, Any]) -> None:
        ids = recover()
        self.stdout.write(f"Re-dispatched {plural(len(ids), 'instance')}{listed(ids)}")

    def do_fire_alarms(self, options: dict[str, Any]) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        ids = fire_alarms(limit=options["limit"])
        self.stdout.write(f"Fired {plural(len(ids), 'alarm')}{listed(ids)}")

    def do_ticker(self, options: dict[str, Any]) -> None:
        from durable_workflows.ticking import Ticker

        ticker = Ticker(cluster=options["name"])

        def stop(signum: int, frame: Any) -> None:
            ticker.stop()

        previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(f"Ticker of cluster {ticker.cluster!r} running in pid {os.getpid()}; "
                          "SIGTERM or SIGINT stops it")
        self.stdout.flush()
        try:
            ticker.start()
            while ticker.is_alive():
                ticker.join(0.5)
        finally:
            ticker.stop()
            ticker.join()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(f"Ticker of cluster {ticker.cluster!r} stopped")

    def do_fork(self, options: dict[str, Any]) -> None:
        try:
            handle = client.fork(options["instance_id"], from_position=options["from_position"],
                                 new_id=options["new_id"])
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Forked {options['instance_id']} as {handle.instance_id} ({handle.refresh().state.label})")

    def do_bulk(self, options: dict[str, Any]) -> None:
        given = filters_of(options)
        try:
            count = bulk_actions.run(options["action"], given, options["reason"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{options['action']}: {plural(count, 'instance')}.")

    def do_check(self, options: dict[str, Any]) -> None:
        from durable_workflows.engine.check import ReplayProblem, run_check

        def report(problem: ReplayProblem) -> None:
            where = ""
            if problem.position is not None:
                branch = f" of branch {problem.branch}" if problem.branch else ""
                where = (f" at position {problem.position}{branch}: recorded {problem.recorded}, "
                         f"now called {problem.called}")
                self.stdout.write(f"would fail  {problem.instance_id}  {problem.workflow}{where}")
            else:
                self.stdout.write(f"would fail  {problem.instance_id}  {problem.workflow}: "
                                  f"{problem.error_type}: {problem.message}")

        result = run_check(options["workflow"], on_problem=report)
        self.stdout.write(result.summary())
        if result.problems:
            raise CommandError(f"{plural(len(result.problems), 'instance')} would fail to replay "
                               f"under the code installed now", returncode=1)

    def do_schedules(self, options: dict[str, Any]) -> None:
        if options["fire"]:
            ids = fire_schedules()
            self.stdout.write(f"Started {plural(len(ids), 'instance')}{listed(ids)}")
        rows = statuses()
        if not rows:
            self.stdout.write("No workflow has a schedule.")
            return
        table = [("WORKFLOW", "SCHEDULE", "NEXT FIRE TIME", "LAST FIRE TIME", "LAST INSTANCE")]
        for row in rows:
            upcoming = row.next_fire_at.isoformat() if row.next_fire_at else "-"
            last = row.last_fire_at.isoformat() if row.last_fire_at else "never"
            instance = f"{row.last_instance_id} ({row.last_state})" if row.last_instance_id else "-"
            table.append((row.workflow, row.schedule, upcoming, last, instance))
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
        for line in table:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
                              + "  " + line[-1])

    def do_setup(self, options: dict[str, Any]) -> None:
        try:
            from durable_workflows.scheduling import SCHEDULES, ensure_schedules
        except ImportError as exc:
            raise CommandError(f"django-q2 is not installed: {exc}") from None
        created = ensure_schedules()
        for name in SCHEDULES:
            status = "created" if name in created else "up to date"
            self.stdout.write(f"Schedule {name}: {status}")

    def do_purge(self, options: dict[str, Any]) -> None:
        try:
            age = parse_duration(options["older_than"], what="--older-than")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        states = list(TERMINAL)
        if options["state"] is not None:
            state = parse_state(options["state"], "--state")
            assert state is not None  # for the type checker: --state was given
            if state not in TERMINAL:
                raise CommandError(
                    f"--state {state.value} is not finished; purge deletes only {FINISHED} instances"
                )
            states = [state]
        cutoff = clock.now() - age
        doomed = WorkflowInstance.objects.filter(state__in=states, finished_at__lt=cutoff)
        total = doomed.count()
        if options["dry_run"] or not total:
            verb = "Would delete" if options["dry_run"] else "Deleted"
            self.stdout.write(f"{verb} {plural(total, 'instance')} finished before {when(cutoff)}.")
            return
        progress = Progress(self.stderr, total, enabled=total > options["batch_size"])
        # By set, a batch a transaction (engine/retention.py); each batch is read again inside
        # its transaction, so nothing restarted meanwhile is lost.
        deleted = delete_in_batches(doomed, options["batch_size"],
                                    on_batch=lambda done: progress.show(min(done, total)))
        progress.done()
        self.stdout.write(f"Deleted {plural(deleted, 'instance')} finished before {when(cutoff)}.")


# -- parsing -----------------------------------------------------------------------------------


def parse_json(text: str, option: str) -> Any:
    try:
        return check_nesting(json.loads(text))
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not valid JSON: {exc}") from None
    except (RecursionError, TooDeep):
        raise CommandError(f"{option} is nested too deeply (at most {MAX_NESTING} levels)") from None


def parse_input(text: str | None) -> tuple[list[Any], dict[str, Any]]:
    if text is None:
        return [], {}
    value = parse_json(text, "--input")
    if isinstance(value, dict):
        return [], value
    if isinstance(value, list):
        return value, {}
    raise CommandError(
        f"--input must be a JSON object (keyword arguments) or array (positional arguments), "
        f"not {type(value).__name__}: {text}"
    )


def parse_state(value: str | None, option: str) -> State | None:
    if value is None:
        return None
    try:
        return as_state(value)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


# -- rendering ---------------------------------------------------------------------------------


class Progress:
    """A one-line bar on stderr, redrawn in place, for purges that walk many rows."""

    WIDTH = 30

    def __init__(self, out: Any, total: int, enabled: bool) -> None:
        self.out, self.total, self.enabled = out, total, enabled

    def show(self, count: int) -> None:
        if not self.enabled:
            return
        filled = self.WIDTH * count // self.total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.out.write(f"\r[{bar}] {count}/{self.total}", style_func=str, ending="")
        self.out.flush()

    def done(self) -> None:
        if self.enabled:
            self.out.write("", style_func=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (headers, *rows)]
    return "\n".join(lines)


def when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return span((end - start).total_seconds(), precise=True)


def span(seconds: float, precise: bool = False) -> str:
    """3 h 12 min, 45 s, 2 d 4 h: two units at most, the way an operator reads it."""
    if precise and seconds < 10:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"
    seconds = max(0, math.ceil(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def held_back(instance: WorkflowInstance, state: State) -> list[str]:
    """Its priority, and what a Queued instance waits for: its start time, a rate limit's
    window, a concurrency slot (the admin's and the API's fields, as lines)."""
    lines = [f"Priority  {instance.priority}"] if instance.priority else []
    if state != State.QUEUED:
        return lines
    if instance.start_at is not None:
        lines.append(f"Starts    {resumes(instance.start_at)}")
    until = ratelimit.limited_until(instance)
    if until is not None:
        lines.append(f"Starts    {resumes(until)} (rate limit)")
    ahead = concurrency.queued_behind(instance)
    if ahead:
        lines.append(f"Queue     {ahead} ahead of it for a concurrency slot")
    return lines


def resumes(fire_at: datetime) -> str:
    delay = (fire_at - clock.now()).total_seconds()
    if delay <= 0:
        return f"now (due since {when(fire_at)})"
    return f"in {span(delay)} ({when(fire_at)})"


def input_of(instance: WorkflowInstance) -> Any:
    args, kwargs = decode_input(instance.input)
    if args and kwargs:
        return {"args": args, "kwargs": kwargs}
    return args if args else kwargs


def describe_outcome(instance: WorkflowInstance, traceback: bool = True) -> str:
    state = as_state(instance.state)
    if state == State.COMPLETED:
        return f"Result    {as_json(client.WorkflowHandle(instance).result())}"
    if instance.error:
        line = f"Error     {error_line(instance.error)}"
        if traceback and instance.error["traceback"]:
            line += "\n\n" + instance.error["traceback"].rstrip()
        return line
    if state == State.CANCELLED and instance.cancel_reason:
        return f"Reason    {instance.cancel_reason}"
    return ""


def step_outcome(step: client.StepInfo) -> str:
    if step.error:
        return error_line(step.error)
    if step.kind == "sleep":
        return f"until {when(step.wake_at)}"
    return as_json(step.result)


def error_line(error: dict[str, str]) -> str:
    return f"{error.get('type') or 'Error'}: {error.get('message', '')}"


def as_json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def listed(ids: Sequence[str], limit: int = 10) -> str:
    if not ids:
        return "."
    shown = ", ".join(ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return f": {shown}{more}."

