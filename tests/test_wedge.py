"""What a worker takes for a wedged task queue (durable_workflows/djangoq/wedge.py), on a real
django-q2 queue in this process: a lock held here stands for one a dead process holds, since
a semaphore looks the same either way. The cluster ending itself is in test_workers_wedge.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from django_q.queues import Queue

from durable_workflows.djangoq import wedge
from durable_workflows.wedge import QueueWatch
from tests.helpers import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def queue() -> Iterator[Queue]:
    q = Queue(maxsize=4)
    yield q
    q.close()
    q.join_thread()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _watch(queue: Queue, clock: Clock) -> QueueWatch:
    return QueueWatch(queue, wedge_seconds=10, clock=clock)


def _put(queue: Queue) -> None:
    queue.put({"func": "math.floor"})
    wait_until(lambda: queue._reader.poll(0), message="the task in the pipe")


def _samples(watch: QueueWatch, clock: Clock, until: float, step: float = 0.5) -> list[str | None]:
    found = []
    while clock.now <= until:
        found.append(watch.stuck())
        clock.now += step
    return found


def test_a_read_lock_held_while_tasks_wait_is_stuck_after_the_wedge_delay(queue, clock):
    watch = _watch(queue, clock)
    _put(queue)
    with queue._rlock:  # a worker killed in get(), the lock never given back
        assert set(_samples(watch, clock, until=9.5)) == {None}
        assert watch.stuck() == wedge.STUCK["read"]
    assert watch.stuck() is None


def test_tasks_waiting_behind_busy_workers_are_not_a_wedge(queue, clock):
    # Every worker in a step: tasks wait in the pipe and nobody holds the read lock.
    watch = _watch(queue, clock)
    _put(queue)
    _put(queue)
    assert set(_samples(watch, clock, until=60)) == {None}
    # Each look took the read lock and gave it back.
    assert queue._rlock.acquire(False)
    queue._rlock.release()


def test_a_read_lock_that_comes_free_within_the_wait_is_no_wedge(queue, clock):
    # Workers reading tasks as fast as they can: the lock is taken at every instant the
    # watch looks, yet it comes free between two of them.
    watch = _watch(queue, clock)
    _put(queue)
    queue._rlock.acquire()
    timer = threading.Timer(0.2, queue._rlock.release)
    timer.start()
    try:
        assert watch.stuck(wait=5) is None
        clock.now = 60
        assert watch.stuck() is None
    finally:
        timer.join()


def test_an_idle_worker_waiting_for_a_task_is_not_a_wedge(queue, clock):
    # An idle worker holds the read lock, and the pipe is empty.
    watch = _watch(queue, clock)
    with queue._rlock:
        assert set(_samples(watch, clock, until=60)) == {None}


def test_a_lock_seen_free_once_starts_the_count_again(queue, clock):
    watch = _watch(queue, clock)
    _put(queue)
    queue._rlock.acquire()
    assert set(_samples(watch, clock, until=8)) == {None}
    queue._rlock.release()
    assert watch.stuck() is None  # a worker took a task: the queue moved
    queue._rlock.acquire()
    try:
        assert set(_samples(watch, clock, until=17.5)) == {None}
        clock.now = 18.5
        assert watch.stuck() == wedge.STUCK["read"]
    finally:
        queue._rlock.release()


def test_a_write_lock_held_with_the_pipe_empty_is_stuck(queue, clock):
    # The pusher killed while it wrote a task: its write lock is never given back.
    watch = _watch(queue, clock)
    with queue._wlock:
        assert set(_samples(watch, clock, until=9.5)) == {None}
        assert watch.stuck() == wedge.STUCK["write"]


def test_a_write_lock_held_while_tasks_wait_is_not(queue, clock):
    # A pusher writing into a pipe that busy workers leave full holds it legitimately.
    watch = _watch(queue, clock)
    _put(queue)
    with queue._wlock:
        assert set(_samples(watch, clock, until=60)) == {None}


def test_the_size_counter_lock_held_is_stuck(queue, clock):
    watch = _watch(queue, clock)
    with queue.size.count.get_lock():
        assert set(_samples(watch, clock, until=9.5)) == {None}
        assert watch.stuck() == wedge.STUCK["size"]


def test_a_closed_queue_is_not_a_wedge(clock):
    q = Queue()
    watch = _watch(q, clock)
    q._reader.close()
    assert watch.stuck() is None
    q._writer.close()


def test_no_queue_to_watch_outside_a_worker():
    assert QueueWatch.of_this_worker() is None


def test_a_worker_whose_guard_is_not_its_parent_ends_nothing():
    assert os.getppid() != 0
    assert wedge.end_cluster(0, "test") is False


def test_the_process_table_knows_this_process_and_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        table = wedge.process_table()
        assert table[os.getpid()][:2] == (os.getppid(), "R")
        assert table[child.pid].parent == os.getpid()
        assert wedge._still_there({child.pid: table[child.pid]}) == {child.pid: table[child.pid]}
        # The same pid started at another time is another process.
        assert wedge._still_there({child.pid: table[child.pid]._replace(started="0")}) == {}
    finally:
        child.kill()
        child.wait()
    assert wedge.process_table().get(child.pid) is None


@pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps")
def test_without_proc_the_process_table_comes_from_ps(monkeypatch):
    monkeypatch.setattr(wedge.os.path, "isdir", lambda path: False)
    table = wedge.process_table()
    assert table[os.getpid()].parent == os.getppid()
    assert table[os.getpid()].started and wedge._still_there({os.getpid(): table[os.getpid()]})
