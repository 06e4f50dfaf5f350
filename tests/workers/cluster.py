"""Starting, stopping and killing real `qcluster` processes for the tests and the bench.

Each cluster runs in a session of its own, so that one signal to its process group reaches
the main process, the sentinel and every worker: SIGKILL to the group is a machine losing
power. Whatever happens in a test, `Clusters.close()` kills every process it started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"durable_workflows ticker running in \S+ \(pid (\d+)\)")


class QCluster:
    """One `python -m django qcluster` process tree with its own log file."""

    def __init__(self, label: str, env: dict[str, str], log_path: Path, workers: int,
                 settings: str = "tests.workers.settings") -> None:
        self.label = label
        self.env = env
        self.log_path = log_path
        self.workers = workers
        self.settings = settings
        self.process: subprocess.Popen | None = None
        self._log_offset = 0

    def start(self) -> QCluster:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "django", "qcluster", "--settings", self.settings],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _this_run(self) -> str:
        return self.log()[self._log_offset:] if self._log_offset else self.log()

    def worker_pids(self) -> list[int]:
        """Worker processes of this run that started their ticker, oldest first."""
        return [int(pid) for pid in READY.findall(self._this_run())]

    def wait_ready(self, timeout: float = 60) -> QCluster:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"cluster {self.label} exited early:\n{self.log()[-4000:]}")
            return len(self.worker_pids()) >= self.workers

        wait_until(ready, timeout=timeout, interval=0.1,
                   message=f"cluster {self.label} to start {self.workers} workers")
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to every process of the cluster at once."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            self.process.wait(30)
            self._wait_group_gone()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the main process only: django-q2's graceful stop. Returns its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._wait_group_gone(timeout)
        return code

    def _wait_group_gone(self, timeout: float = 30) -> None:
        assert self.process is not None
        group = self.process.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.killpg(group, signal.SIGKILL)

    def close(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            pass


class Clusters:
    """Starts clusters sharing one queue and one database; kills them all on close()."""

    def __init__(self, base_env: dict[str, str], log_dir: Path) -> None:
        self.base_env = base_env
        self.log_dir = log_dir
        self.started: list[QCluster] = []

    def start(self, label: str = "a", workers: int = 2, ready: bool = True,
              **env: str | float | int) -> QCluster:
        full_env = {**self.base_env, "DW_WORKERS": str(workers),
                    **{key: str(value) for key, value in env.items()}}
        cluster = QCluster(label, full_env, self.log_dir / f"cluster-{label}.log", workers)
        self.started.append(cluster)
        cluster.start()
        if ready:
            cluster.wait_ready()
        return cluster

    def logs(self) -> str:
        return "\n".join(f"--- cluster {c.label}\n{c.log()[-3000:]}" for c in self.started)

    def close(self) -> None:
        for cluster in self.started:
            cluster.close()
