"""Starting the chaos driver (run.py) from the test or the bench.

The driver runs in a process of its own, so that its Django settings point at its private
servers, and in a session of its own, so that it can be stopped as a whole. Every process
it starts carries a marker that this side chooses: whatever becomes of the driver (a
timeout, a crash, a SIGKILL), a sweep for the marker afterwards leaves nothing running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.chaos import procs

ROOT = Path(__file__).resolve().parents[2]


def run_driver(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run the driver in a process (and session) of its own; return its summary. Whatever
    happens, every process of the run is killed before this returns."""
    run_id = uuid.uuid4().hex[:12]
    env = {**os.environ, procs.MARKER: run_id}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    driver = subprocess.Popen([sys.executable, "-m", "tests.chaos.run", *argv], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = driver.communicate(timeout=timeout)
    except BaseException:
        driver.send_signal(signal.SIGTERM)  # let it clean up, then make sure
        try:
            driver.wait(30)
        except subprocess.TimeoutExpired:
            procs.killpg(driver.pid)
            driver.wait(30)
        raise
    finally:
        procs.kill_marked(run_id)
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"the chaos driver printed no summary (exit code {driver.returncode}); "
                           f"its files: {tempfile.gettempdir()}/dw-chaos-{run_id}-*")
    return json.loads(lines[-1])
