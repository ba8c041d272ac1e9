"""Issue 14: a notebook job on a pool that does not trust it submits with its own IDTOKEN.

The system pool is network-isolated: a tool inside a job is like one on an execute
point with no shared file system, so it must present a token. With the site's
``notebook.submit_token`` on, the hub fetches one as the user and the launcher puts it
where the job's HTCondor tools look; with it off, ``condorsub`` says which switch is off.
The token is a secret: it must show in no job ad, event log, hub log, command line or
other account's view.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest

from tests.sessions import run_in_terminal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real accounts and sudo need root")

JWT = r"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"


def with_submit_token(hub, on: bool) -> None:
    """The site's switch set as asked (the demo's site has it on); the hub restarted."""
    config = hub.root / "site.toml"
    text = re.sub(r"(?m)^submit_token = \w+\n", "", config.read_text())
    config.write_text(
        text.replace("[notebook]\n", f"[notebook]\nsubmit_token = {str(on).lower()}\n")
    )
    hub.stop()
    hub.start()


def submit_in_terminal(hub, user: str, before: str = "") -> str:
    return asyncio.run(
        run_in_terminal(
            hub,
            user,
            f"{before}condorsub submit --wait /usr/bin/whoami; rc=$?; "
            "cat condorsub-jobs/*/job.*.0.out; echo DONE-$rc",
            until=r"DONE-\d+",
            timeout=120,
        )
    )


SLEEPER = "executable = /bin/sleep\narguments = 600\nqueue\n"


def ssh_in_terminal(hub, system_pool, user: str, direct: bool = False) -> str:
    """``condorsub ssh`` from the notebook's terminal into another running job of the user
    (and with ``direct``, condor_ssh_to_job itself)."""
    target = system_pool.submit(SLEEPER, user=user, name="sleeper.sub")
    system_pool.wait_for(target, lambda a: a["JobStatus"] == 2, timeout=60)
    after = f'"$_CONDOR_BIN/condor_ssh_to_job" {target} true; echo RC-$?; ' if direct else ""
    return asyncio.run(
        run_in_terminal(
            hub,
            user,
            f"condorsub ssh {target} expr 6 + 36; echo DONE-$?; {after}echo END",
            until=r"\nEND",
            timeout=120,
        )
    )


def test_with_the_switch_on_a_notebook_submits_and_the_token_stays_secret(
    sudo_hub, system_pool, unix_users
):
    hub = sudo_hub
    with_submit_token(hub, True)
    user, other = unix_users("s"), unix_users("o")
    hub.spawn(user, {})
    job = hub.job_of(user)
    screen = submit_in_terminal(
        hub, user, before='echo "TOKEN=$(cat "$_CONDOR_SEC_TOKEN_DIRECTORY"/notebook)"; '
    )
    assert "DONE-0" in screen, screen
    found = re.search(rf"TOKEN=({JWT})", screen)
    assert found, screen
    token = found.group(1)
    signature = token.rsplit(".", 1)[1]
    # the user's, no longer than the job may run (the demo's default 2h), READ and WRITE only
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"].split("@")[0] == user, claims
    assert claims["exp"] - claims["iat"] <= 2 * 3600, claims
    assert sorted(claims["scope"].split()) == ["condor:/READ", "condor:/WRITE"], claims
    # the batch job ran as the user (its output, in the notebook's work directory)
    assert re.search(rf"\n{user}\r?\nDONE-0", screen), screen
    # and the token lets condor_ssh_to_job in: the schedd needs READ and WRITE for it
    shell = ssh_in_terminal(hub, system_pool, user)
    assert re.search(r"[\r\n]42\r?\nDONE-0", shell), shell
    # nowhere to be seen: ads (as the user, as another account), event log, hub log, ps
    views = {
        "condor_q -l (user)": system_pool.run("condor_q", "-l", job, user=user).stdout,
        "condor_q -l (other)": system_pool.run("condor_q", "-allusers", "-l", user=other).stdout,
        "condor_q -l (root)": system_pool.run("condor_q", "-allusers", "-l").stdout,
        "condor_history -l": system_pool.run("condor_history", "-l", user=user).stdout,
        "notebook.log": (
            Path(pwd.getpwnam(user).pw_dir) / ".condorspawner/default/notebook.log"
        ).read_text(),
        "hub log": (hub.root / "jupyterhub.log").read_text(errors="replace"),
        "ps": subprocess.run(
            ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
        ).stdout,
    }
    assert "CondorSpawnerUser" in views["condor_q -l (other)"]  # other sees the job's ad
    assert f"{job.split('.')[0]}" in views["condor_q -l (user)"]
    for where, text in views.items():
        assert signature not in text, f"the job's token shows in {where}"


@pytest.mark.localpool_only(
    "on a one-machine real pool a job reaches the schedd on its own host with FS "
    "authentication as its owner: no token is needed, so none can be missed"
)
def test_with_the_switch_off_condorsub_names_it(sudo_hub, system_pool, unix_users):
    hub = sudo_hub
    with_submit_token(hub, False)
    user = unix_users("n")
    hub.spawn(user, {})
    screen = submit_in_terminal(hub, user)
    assert re.search(r"DONE-[1-9]", screen), screen
    assert "notebook.submit_token = true" in screen, screen
    assert "Traceback" not in screen, screen
    mine = system_pool.run(
        "condor_q", "-allusers", "-af", "ClusterId", "-constraint", f'Owner == "{user}"'
    )
    assert len(mine.stdout.split()) == 1, mine.stdout  # the notebook job, no batch job
    # nor into another of the user's jobs: condorsub ssh, or condor_ssh_to_job itself
    shell = ssh_in_terminal(hub, system_pool, user, direct=True)
    assert re.search(r"DONE-[1-9]", shell) and not re.search(r"[\r\n]42\r?\n", shell), shell
    assert "notebook.submit_token = true" in shell, shell
    assert re.search(r"[\r\n]Can't connect to schedd\r?\nRC-1", shell), shell
    assert "Traceback" not in shell, shell
