"""A JupyterLab terminal in a notebook job is the batch environment, and batch output comes home.

Driven through the terminals websocket (what JupyterLab's terminal uses), not a kernel:
a kernel inherits the server's environment, a terminal starts a shell of its own.
"""

from __future__ import annotations

import asyncio
import pwd
import re
import subprocess
from pathlib import Path

from tests.sessions import run_in_terminal
from tests.waiting import wait_until


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
    wait_until(lambda: hub.job_of(user) is None, 60, "the job left the queue")
    work = Path(pwd.getpwnam(user).pw_dir) / "jupyter"
    outputs = list((work / "condorsub-jobs").glob("*/job.*.0.out"))
    assert [p.read_text() for p in outputs] == ["hello\n"], list(work.rglob("*"))
    # condorsub said where the output would land: in the notebook's work directory
    assert re.search(r"/jupyter/condorsub-jobs/\S+", screen), screen
