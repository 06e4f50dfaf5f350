"""A private PostgreSQL and a private redis-server for one chaos run.

The machine's own PostgreSQL (5432) and Redis (6379) are shared: the chaos run crashes its
database and restarts its broker, so it must never touch them. Each run starts its own
servers, from the Debian binaries, on free ports, with their data in the run's temporary
directory. PostgreSQL refuses to run as root, so as root (here and in CI) it runs as the
`postgres` user. Each server runs in a session of its own, so that one SIGKILL to its
process group takes it (PostgreSQL's backends move to sessions of their own, and exit as
soon as they see their postmaster gone), and every process carries the run's marker in its
environment or command line (see procs.py), so that nothing outlives the run.

Redis runs without persistence (`--save '' --appendonly no`): a restart loses every task
in the queue. That is the harsher fault and a real one (a Redis without persistence, or the
last second of an `appendfsync everysec` log): the library promises that `recover()` sends
again the starts and resumes a broker lost, and this is what proves it.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.chaos import procs

DATABASE = "chaos"


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb, pg_ctl and postgres."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        folder = Path(initdb).parent
        if (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            version = folder.parent.name
            found.append((int(version) if version.isdigit() else 0, folder))
    return max(found)[1] if found else None


def missing() -> str | None:
    """Why a chaos run cannot start here, or None."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)"
    if shutil.which("redis-server") is None:
        return "redis-server not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres user to run PostgreSQL as"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(condition, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"{what}: exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def _kill_group(process: subprocess.Popen | None) -> None:
    """SIGKILL the session `process` leads, unless it was reaped already (its number may
    then be someone else's); then reap it."""
    if process is None or process.poll() is not None:
        return
    procs.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


class PrivatePostgres:
    """A PostgreSQL cluster in `root`, on a port of its own, trust auth, fsync on."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.bin = postgres_bin()
        assert self.bin is not None, missing()
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.env = env
        self.process: subprocess.Popen | None = None
        atexit.register(self.stop)  # a second stop() finds nothing left to kill
        user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self._as = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "socket").mkdir(exist_ok=True)
        if user:
            for path in (self.root, self.root / "socket"):
                os.chown(path, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(args, cwd=self.root, env=self.env, check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self._as)

    def start(self) -> None:
        """initdb on the first start; then run the postmaster and wait until it takes
        connections (after a crash, that includes its crash recovery)."""
        if not self.data.exists():
            # --no-sync only skips syncing the fresh files once; the server runs with fsync.
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                      "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        log = open(self.log, "ab")
        try:
            self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={self.root / 'socket'}",
                 "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
                cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **self._as)
        finally:
            log.close()
        _wait(self._accepts, 120, "private PostgreSQL", self.process, self.log)

    def _accepts(self, database: str = "postgres") -> bool:
        import psycopg

        try:
            psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database,
                            connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: the postmaster and its backends quit at once, with no
        checkpoint; the next start runs crash recovery. Every connection is cut."""
        assert self.process is not None
        self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w")
        self.process.wait(60)

    def stop(self) -> None:
        """Kill the running postmaster's process group: the postmaster and its backends.
        (A crashed one waited for its backends before it exited.)"""
        _kill_group(self.process)


class PrivateRedis:
    """A redis-server on a port of its own, without persistence."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.log = root / "redis.log"
        self.port = free_port()
        self.env = env
        self.process: subprocess.Popen | None = None
        atexit.register(self.stop)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.log, "ab")
        try:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.root)],
                cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        _wait(self._pings, 60, "private redis-server", self.process, self.log)

    def _pings(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def crash(self) -> None:
        """SIGKILL: the queue and everything else in memory is gone."""
        assert self.process is not None
        procs.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        _kill_group(self.process)
