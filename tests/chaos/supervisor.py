"""Restarts `qcluster` whenever its main process has exited, as systemd does with
`Restart=always` and a short `RestartSec`.

Like systemd with `KillMode=none`, it does not clean up after a cluster whose main process
died: when the guard (django-q2's Sentinel) is killed, the main process exits, but the
workers the guard started live on as orphans in their old process group, still taking
tasks. Stopping those is the library's business, not the supervisor's. The supervisor only
remembers every process group it started, so that `stop()` kills them all at the end.

The process tree of one cluster, in its own session: the main process (`qcluster`), its one
child the guard, and the guard's children: the workers, the monitor and the pusher.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.chaos import procs
from tests.workers.cluster import QCluster


class Supervisor:
    """Keeps one 2-worker cluster running; see the module docstring."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2,
                 settings: str = "tests.chaos.settings", restart_delay: float = 1.0) -> None:
        self.env = {**env, "DW_WORKERS": str(workers)}
        self.run_id = env[procs.MARKER]
        self.log_path = log_path
        self.workers = workers
        self.settings = settings
        self.restart_delay = restart_delay
        self.clusters: list[QCluster] = []
        self.exits: list[tuple[float, int, int | None]] = []  # (time, main pid, exit code)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-supervisor", daemon=True)

    # -- the loop -------------------------------------------------------------------------
    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _loop(self) -> None:
        rounds = 0
        while not self._stopping.is_set():
            rounds += 1
            cluster = self.current()
            if cluster is None or cluster.process is None or cluster.process.poll() is not None:
                if cluster is not None and cluster.process is not None:
                    self.exits.append((time.time(), cluster.process.pid, cluster.process.returncode))
                    if self._stopping.wait(self.restart_delay):
                        return
                self._launch()
            if rounds % 10 == 0:
                # Reap orphans (a killed guard's workers, adopted by the driver) once dead.
                procs.reap(exclude=self._popen_pids())
            self._stopping.wait(0.1)

    def _launch(self) -> None:
        cluster = QCluster(f"chaos-{len(self.clusters)}", self.env, self.log_path, self.workers,
                           settings=self.settings)
        with self._lock:
            if self._stopping.is_set():
                return
            cluster.start()
            self.clusters.append(cluster)

    def _popen_pids(self) -> set[int]:
        with self._lock:
            return {c.process.pid for c in self.clusters if c.process is not None}

    # -- what the faults need -------------------------------------------------------------
    def current(self) -> QCluster | None:
        with self._lock:
            return self.clusters[-1] if self.clusters else None

    def main_pid(self) -> int | None:
        cluster = self.current()
        return cluster.process.pid if cluster and cluster.alive and cluster.process else None

    def guard_pid(self) -> int | None:
        """The Sentinel: the main process's only child."""
        main = self.main_pid()
        kids = procs.children(main) if main else []
        return kids[0] if len(kids) == 1 else None

    def worker_pids(self) -> list[int]:
        """Live workers of the current cluster: processes that logged their ticker in this
        cluster's part of the log and are still the current guard's children."""
        cluster, guard = self.current(), self.guard_pid()
        if cluster is None or guard is None:
            return []
        kids = set(procs.children(guard))
        return [pid for pid in cluster.worker_pids() if pid in kids]

    def ready(self) -> bool:
        return len(self.worker_pids()) >= self.workers

    @property
    def starts(self) -> int:
        return len(self.clusters)

    # -- the end --------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop restarting; SIGKILL every process group started (orphans included)."""
        self._stopping.set()
        self._thread.join(30)
        with self._lock:
            groups = [c.process.pid for c in self.clusters if c.process is not None]
            popens = [c.process for c in self.clusters if c.process is not None]
        deadline = time.monotonic() + 30
        while any([procs.killpg_ours(group, self.run_id) for group in groups]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster processes survived SIGKILL: {groups}")
            time.sleep(0.05)
        for process in popens:
            process.wait(30)
        procs.reap(exclude={p.pid for p in popens})

    def logs(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""
