"""A JupyterLab terminal in a notebook job is the batch environment, and batch output comes home.

Driven through the terminals websocket (what JupyterLab's terminal uses), not a kernel:
a kernel inherits the server's environment, a terminal starts a shell of its own.
"""

from __future__ import annotations

import asyncio
import json
import pwd
import re
import subprocess
import time
from pathlib import Path

from tests.harness import HUB_TOKEN


async def run_in_terminal(hub, user: str, command: str, until: str, timeout: float = 90) -> str:
    """Type ``command`` into a new terminal of the user's server; the screen text up to the
    first match of the pattern ``until`` (in the output, not in the echo of the command)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    status, term = hub.api("POST", f"/user/{user}/api/terminals", {}, through_proxy=True)
    assert status == 200, (status, term)
    url = f"ws://127.0.0.1:{hub.port}/user/{user}/terminals/websocket/{term['name']}"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {HUB_TOKEN}"}))
    ws.write_message(json.dumps(["stdin", command + "\r"]))
    seen, echoed = "", len(command)
    deadline = time.monotonic() + timeout
    try:
        while not re.search(until, seen[echoed:]) and time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), deadline - time.monotonic())
            if raw is None:
                break
            kind, *rest = json.loads(raw)
            if kind == "stdout":
                seen += rest[0]
    finally:
        ws.close()
    assert re.search(until, seen[echoed:]), (
        f"no {until!r} on the terminal within {timeout:g} s:\n{seen}"
    )
    return seen


def test_terminal_has_condorsub_and_batch_output_comes_home(sudo_hub, system_pool, unix_users):
    hub = sudo_hub
    user = unix_users("t")
    # a login shell that is neither the fallback (bash) nor anything the job inherits
    subprocess.run(["usermod", "--shell", "/bin/sh", user], check=True, timeout=30)
    hub.spawn(user, {})
    screen = asyncio.run(
        run_in_terminal(
            hub,
            user,
            'echo "SHELL=$SHELL CWD=$(pwd)"; command -v condorsub; '
            "condorsub submit --wait /bin/echo hello; echo DONE-$?",
            until=r"DONE-\d",
            timeout=120,
        )
    )
    assert re.search(r"SHELL=/bin/sh CWD=\S*/jupyter\r?\n", screen), screen
    assert "not found" not in screen, screen
    assert "DONE-0" in screen, screen
    assert hub.api("DELETE", f"/users/{user}/server")[0] in (202, 204)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and hub.job_of(user):
        time.sleep(0.3)
    assert hub.job_of(user) is None
    work = Path(pwd.getpwnam(user).pw_dir) / "jupyter"
    outputs = list((work / "condorsub-jobs").glob("*/job.*.0.out"))
    assert [p.read_text() for p in outputs] == ["hello\n"], list(work.rglob("*"))
    # condorsub said where the output would land: in the notebook's work directory
    assert re.search(r"/jupyter/condorsub-jobs/\S+", screen), screen
