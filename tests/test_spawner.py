"""CondorSpawner end to end: real JupyterHub, proxy, singleuser server, OpenSSH, localpool.

As a site runs it: JupyterHub as root acting for real accounts through sudo
(the ``sudo_hub`` fixture), jobs in network namespaces of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import time
from pathlib import Path

import pytest

from tests.harness import HUB_TOKEN
from tests.sessions import (
    nonce,
    program,
    run_in_kernel,
    start_kernel,
    time_to_answer,
    tunnel_pids,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="accounts, sudo, namespaces need root")


def events(hub, user: str) -> list[str]:
    """The spawn's progress messages (the event stream the spawn page shows)."""
    import urllib.request

    request = urllib.request.Request(
        f"{hub.url}/hub/api/users/{user}/server/progress",
        headers={"Authorization": f"token {HUB_TOKEN}"},
    )
    messages = []
    with urllib.request.urlopen(request, timeout=60) as response:
        for line in response:
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                messages.append(event.get("message", ""))
                if event.get("ready") or event.get("failed"):
                    break
    return messages


def tunnel_ssh_pids(user: str) -> list[int]:
    """The ssh processes of this user's tunnel (found by the spawn's rendezvous)."""
    return [p for p in tunnel_pids([nonce(user)]) if program(p) == "ssh"]


def test_a_notebook_in_the_chosen_os_through_the_proxy(sudo_hub, system_pool, unix_users):
    hub, pool = sudo_hub, system_pool
    alice = unix_users("a")
    hub.request_spawn(alice, {"cpus": 2, "container": "Debian12"})
    messages = events(hub, alice)
    model = hub.wait_ready(alice)
    assert model["servers"][""]["ready"]
    assert hub.api("GET", f"/user/{alice}/api/status", through_proxy=True)[0] == 200
    job = hub.job_of(alice)
    ad = pool.ad(job)
    assert (ad["RequestCpus"], ad["ContainerOS"], ad["CondorSpawnerKind"]) == (
        2,
        "Debian12",
        "notebook",
    )
    kernel = start_kernel(hub, alice)
    out = asyncio.run(
        run_in_kernel(
            hub,
            alice,
            kernel,
            f"""
import os, socket, re
print("threads", os.environ["OMP_NUM_THREADS"])
ad = open(os.environ["_CONDOR_JOB_AD"]).read()
print("os", re.search(r'^ContainerOS = "(.*)"$', ad, re.M).group(1))
for name, port in (("hub", {hub.hub_port}), ("proxy", {hub.port})):
    with socket.socket() as s:
        s.settimeout(2)
        print(name, "reachable" if s.connect_ex(("127.0.0.1", port)) == 0 else "unreachable")
print("interfaces", sorted(n for _, n in socket.if_nameindex()))
""",
        )
    )
    assert "threads 2\n" in out and "os Debian12\n" in out, out
    if pool.network == "isolated":  # localpool's: the real pool's jobs share the host's
        # the job's namespace has no route to the hub: only the tunnel's reverse forward
        assert "hub unreachable" in out and "proxy unreachable" in out, out
        assert "interfaces ['lo']" in out, out
    # the progress stream told each phase, in order, in HTCondor's language
    phases = [
        f"Submitted as HTCondor job {job} (2 CPUs, ",
        f"Job {job} running on slot1_",
        f"Opening the tunnel to job {job}",
        f"Tunnel open to job {job}; the notebook server is starting",
        "The notebook server answers through the tunnel",
    ]
    where = [next((i for i, m in enumerate(messages) if p in m), None) for p in phases]
    assert None not in where and where == sorted(where), (where, messages)
    assert "Debian 12" in messages[where[0]], messages


def test_the_token_goes_nowhere_visible(sudo_hub, system_pool, unix_users):
    hub, pool = sudo_hub, system_pool
    bob = unix_users("b")
    hub.spawn(bob, {})
    job = hub.job_of(bob)
    long_ad = pool.run("condor_q", "-l", job).stdout
    submit_dir = Path(pwd.getpwnam(bob).pw_dir) / ".condorspawner" / "default"
    secret = submit_dir / "condorspawner.secret"
    token = json.loads(secret.read_text())["env"]["JUPYTERHUB_API_TOKEN"]
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    assert len(token) > 20
    assert token not in long_ad
    assert token not in (submit_dir / "job.sub").read_text()
    assert hub.api("DELETE", f"/users/{bob}/server")[0] in (202, 204)
    wait_until(lambda: not hub.job_of(bob), 60, "bob's job left the queue")
    history = pool.run("condor_history", "-l", job).stdout
    assert history and token not in history
    assert token not in (submit_dir / "notebook.log").read_text()


def test_invalid_options_are_refused_before_submitting(sudo_hub, system_pool, unix_users):
    hub, pool = sudo_hub, system_pool
    carol = unix_users("c")
    hub.api("POST", f"/users/{carol}")
    for options, field in (
        ({"cpus": 64}, "cpus: 64 is above the site limit of 4"),
        ({"container": "Windows11"}, "container: 'Windows11' is not offered"),
        ({"memory": [1]}, "memory: [1] is not a size"),
        ({"colour": "red"}, "colour: 'red' is not an option"),
    ):
        status, body = hub.api("POST", f"/users/{carol}/server", {"user_options": options})
        assert status == 400, (status, body)
        assert field in body["message"], body
    assert pool.run("condor_q", "-json", "-allusers").stdout == ""


def test_a_held_job_fails_the_spawn_with_its_reason(sudo_hub, system_pool, unix_users):
    hub, pool = sudo_hub, system_pool
    dave = unix_users("d")
    hub.api("POST", f"/users/{dave}")
    status, _ = hub.api(
        "POST",
        f"/users/{dave}/server",
        {"user_options": {"requirements": 'TARGET.Machine == "nowhere"'}},
    )
    assert status == 202
    job = wait_until(lambda: hub.job_of(dave), 20, "dave's job was submitted")
    assert pool.run("condor_hold", "-reason", "disk quota exceeded", job).returncode == 0
    held_at = time.monotonic()
    messages = events(hub, dave)
    assert time.monotonic() - held_at < 5
    assert any("disk quota exceeded" in m for m in messages), messages
    wait_until(lambda: hub.job_of(dave) is None, 10, "the held job left the queue")


@pytest.mark.slow  # waits out the 20 s start timeout; CI's slow tier runs it
def test_a_request_fitting_no_slot_is_removed_at_the_start_timeout(sudo_hub, unix_users):
    hub = sudo_hub
    erin = unix_users("e")
    hub.api("POST", f"/users/{erin}")
    status, _ = hub.api(
        "POST",
        f"/users/{erin}/server",
        {"user_options": {"requirements": 'TARGET.Machine == "nowhere"'}},
    )
    assert status == 202
    messages = events(hub, erin)
    assert any("is queued: no match found" in m for m in messages), messages
    assert any(
        "still waiting in the queue after 20 s (no match found); it was removed" in m
        for m in messages
    ), messages
    assert hub.job_of(erin) is None


def test_the_tunnel_comes_back_and_the_kernel_survives(sudo_hub, unix_users):
    hub = sudo_hub
    frank = unix_users("f")
    hub.spawn(frank, {})
    job = hub.job_of(frank)
    kernel = start_kernel(hub, frank)
    before = tunnel_ssh_pids(frank)
    assert before
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    time_to_answer(hub, frank, timeout=30)  # how fast: benchmarks.faults
    assert hub.job_of(frank) == job
    _, kernels = hub.api("GET", f"/user/{frank}/api/kernels", through_proxy=True)
    assert kernel in [k["id"] for k in kernels]


def test_a_failing_condor_q_stops_nothing(sudo_hub, unix_users):
    hub = sudo_hub
    grace = unix_users("g")
    hub.spawn(grace, {})
    job = hub.job_of(grace)
    hub.fail_flag.write_text("")
    try:
        time.sleep(3 * 2 + 1)  # three spawner poll intervals, several watcher intervals
        _, model = hub.api("GET", f"/users/{grace}")
        assert model["servers"][""]["ready"], model
    finally:
        hub.fail_flag.unlink()
    assert hub.job_of(grace) == job
    assert "condor_q failed (job states unknown" in hub.log_tail(400)
    time_to_answer(hub, grace, timeout=30)


def test_work_directory_comes_back_after_vacate_and_stop(sudo_hub, system_pool, unix_users):
    hub, pool = sudo_hub, system_pool
    heidi = unix_users("h")
    hub.spawn(heidi, {})
    job = hub.job_of(heidi)
    work = Path(pwd.getpwnam(heidi).pw_dir) / "jupyter"
    for name in ("before-vacate.txt", "before-stop.txt"):
        status, _ = hub.api(
            "PUT",
            f"/user/{heidi}/api/contents/{name}",
            {"type": "file", "format": "text", "content": name},
            through_proxy=True,
        )
        assert status in (200, 201)
        if name == "before-vacate.txt":
            assert pool.run("condor_vacate_job", job).returncode == 0
            # the server stops, then HTCondor transfers the work directory back: on a busy
            # machine's real pool that took more than 20 s once (CI)
            back = work / name
            wait_until(back.exists, 90, "the work directory back")
            assert back.read_text() == name
            pool.wait_for(job, lambda a: a["NumJobStarts"] == 2 and a.get("RemoteHost"))
            time_to_answer(hub, heidi, timeout=60)
    assert hub.api("DELETE", f"/users/{heidi}/server")[0] in (202, 204)
    wait_until(lambda: not hub.job_of(heidi), 60, "heidi's job left the queue")
    assert (work / "before-stop.txt").read_text() == "before-stop.txt"


def test_a_hub_that_cannot_start_says_why_and_leaves_no_proxy(pool, tmp_path):
    """The hub's port taken by its own proxy (two ports once picked the same): the hub
    exits, its proxy asks itself for its error page in a loop. The harness says why the
    hub exited (not the loop) and stops the proxy the hub left behind."""
    from tests.harness import Hub

    hub = Hub(tmp_path / "hub", pool)
    config = hub.root / "jupyterhub_config.py"
    config.write_text(
        config.read_text().replace(f"hub_port = {hub.hub_port}", f"hub_port = {hub.port}")
    )
    try:
        with pytest.raises(AssertionError, match="Failed to bind hub"):
            hub.start()
    finally:
        hub.stop()
    wait_until(lambda: not listens(hub.port), 10, "the proxy the hub left behind is stopped")


def listens(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
