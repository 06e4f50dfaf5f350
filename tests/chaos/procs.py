"""Finding and killing processes through /proc (Linux only).

The harness must leave nothing behind: a killed guard leaves its workers running as
orphans in their old process group, and a killed driver leaves whatever it started. Every
process of a run carries DW_CHAOS_RUN=<id> in its environment (children inherit it), so a
sweep over /proc finds them all whatever became of their parents and groups.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

MARKER = "DW_CHAOS_RUN"
PR_SET_CHILD_SUBREAPER = 36


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits for its parent to reap it)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def parent(pid: int) -> int | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (found by their parent pid: this kernel may lack
    /proc/<pid>/task/<tid>/children)."""
    return [child for child in children_any(pid) if alive(child)]


def reading_a_pipe(pid: int) -> bool:
    """Whether the main thread of `pid` waits in a read of a pipe: of the idle workers of a
    django-q2 cluster, the one that holds the task queue's read lock (the others wait for
    that lock, on a futex). The cluster's monitor reads a pipe too: ask about workers."""
    try:
        return "pipe" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    members = []
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(pid)
    return sorted(members)


def ours(pid: int, run_id: str) -> bool:
    """Whether `pid` is a live process of this run: the marker in its environment, or the
    run id in its command line (PostgreSQL overwrites its environment with its process
    titles, but the postmaster's command line names its data directory, which is in the
    run's directory)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    marked = f"{MARKER}={run_id}".encode() in environ.split(b"\0") or run_id.encode() in cmdline
    return marked and alive(pid)


def marked(run_id: str) -> list[int]:
    """Live processes of this run."""
    return [pid for pid in _pids() if ours(pid, run_id)]


def killpg_ours(pgid: int, run_id: str) -> bool:
    """SIGKILL process group `pgid` if a process of this run is in it. Once a group is
    empty its number may lead someone else's group: never kill a group on its number alone.
    Returns whether it had members of ours."""
    if not any(ours(pid, run_id) for pid in group_members(pgid)):
        return False
    killpg(pgid)
    return True


def kill(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def killpg(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_marked(run_id: str, timeout: float = 30.0) -> list[int]:
    """SIGKILL every process of this run, and the process groups they lead, except the
    caller and its own group; wait until they are gone. Returns the pids it found."""
    me, my_group = os.getpid(), os.getpgid(0)
    found: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in marked(run_id) if pid != me]
        if not left:
            return sorted(found)
        found.update(left)
        for pid in left:
            try:
                group = os.getpgid(pid)
            except ProcessLookupError:
                continue
            if group != my_group:
                killpg(group)
        kill(left)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of chaos run {run_id} survived SIGKILL: {left}")
        time.sleep(0.05)


def become_subreaper() -> None:
    """Orphans of this process's descendants (a killed guard's workers) become its
    children instead of init's, so that `reap()` collects them once they are killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap(exclude: Iterable[int] = ()) -> None:
    """Collect dead children (orphans adopted by `become_subreaper`), except `exclude`:
    those are reaped by their subprocess.Popen, which needs their exit status."""
    skip = set(exclude)
    for pid in children_any(os.getpid()):
        if pid in skip:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def children_any(pid: int) -> list[int]:
    """Children of `pid`, zombies included."""
    found = []
    for child in _pids():
        fields = _stat(child)
        if fields is not None and int(fields[1]) == pid:
            found.append(child)
    return sorted(found)
