"""The reference as a newcomer reads it: what the client page lists exists, and the REST API
page's example runs as written against the example project. (The README is a landing page now:
its samples are checked with the docs' in tests/test_docs.py.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from durable_workflows import client
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
CLIENT = (ROOT / "docs" / "reference" / "client.md").read_text()
REST_API = (ROOT / "docs" / "reference" / "rest-api.md").read_text()
MANAGE = ROOT / "example_project" / "manage.py"


def test_every_function_listed_under_client_is_reachable_from_client():
    listed = re.findall(r"^\| (`.+?`) \|", CLIENT, re.MULTILINE)
    names = {name for cell in listed for name in re.findall(r"(\w+)\(", cell)}
    assert {"start", "recover", "fire_alarms", "check_replay"} <= names
    missing = sorted(name for name in names if not callable(getattr(client, name, None)))
    assert not missing, f"listed under Client but not in durable_workflows.client: {missing}"


def _curl_example() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", REST_API, re.DOTALL)
    assert block, "the REST API section has no bash example"
    command = block.group(1).split("curl", 1)[1].replace("\\\n", " ")
    return ["curl", "-s", "-w", "\n%{http_code}", *shlex.split(command)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, str(MANAGE), *args], env=env, check=True, capture_output=True, timeout=120)


@pytest.mark.slow
def test_the_api_example_runs_as_written_against_the_example_project(tmp_path):
    env = {**os.environ, "SQLITE_PATH": str(tmp_path / "example.sqlite3"),
           "DJANGO_SUPERUSER_PASSWORD": "admin", "PYTHONUNBUFFERED": "1"}
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)  # the example project's own settings, on SQLite
    # What the demo leaves: a migrated database with the user admin (password admin).
    _manage(env, "migrate", "--verbosity", "0")
    _manage(env, "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(MANAGE), "runserver", "--noreload", f"127.0.0.1:{port}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, timeout=60, message="the example project's server to listen")
        command = [part.replace("localhost:8000", f"localhost:{port}") for part in _curl_example()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        server.terminate()
        server.wait(30)
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "201", done.stdout
    answer = json.loads(body)
    shown = json.loads(re.search(r"```json\n(\{.*?\})\n```", REST_API, re.DOTALL).group(1))
    assert answer.keys() == shown.keys()
    assert {k: answer[k] for k in ("id", "workflow", "state", "input")} == {
        k: shown[k] for k in ("id", "workflow", "state", "input")}
