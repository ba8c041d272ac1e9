"""Never lose a job, a file or a tunnel: the spawner against JupyterHub's contract, as root
acting for real accounts through sudo (tunnels then cannot rely on parent-death signals)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest

from proxy_tunnel.procs import descendants
from tests.sessions import (
    cmdline,
    nonce,
    parent_of,
    program,
    server_gone,
    squatter,
    ssh_session_dirs,
    submit_dir,
    time_to_answer,
    tunnel_pids,
    tunnel_tops,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real accounts and sudo need root")


@pytest.mark.slow  # also in benchmarks.faults (slow tier): restart, SIGKILL, re-attach
def test_tunnels_end_with_the_hub_and_a_new_hub_reattaches(sudo_hub, system_pool, unix_users):
    """Issue 16.1: SIGTERM, then SIGKILL of the hub; the second time an old tunnel is even
    left alive on purpose (its keeper killed first): the new hub ends it and re-attaches."""
    users = [unix_users("g"), unix_users("h")]
    for user in users:
        sudo_hub.request_spawn(user, {})
    for user in users:
        sudo_hub.wait_ready(user)
    jobs = {user: sudo_hub.job_of(user) for user in users}
    nonces = [nonce(user) for user in users]
    assert tunnel_pids(nonces)
    sudo_hub.stop()  # SIGTERM
    wait_until(lambda: not tunnel_pids(nonces), 15, "the old hub's tunnels gone")
    sudo_hub.start()
    for user in users:
        time_to_answer(sudo_hub, user, timeout=60)
    # now the worst case: tunnels that outlive their keeper and the hub (SIGKILL to both)
    keepers = {parent_of(p) for n in nonces for p in tunnel_tops(n)}
    assert len(keepers) == 1  # one keeper for all the hub's tunnels
    for pid in keepers:
        os.kill(pid, signal.SIGKILL)
    os.killpg(sudo_hub.process.pid, signal.SIGKILL)
    sudo_hub.process.wait(timeout=10)
    time.sleep(1)
    assert tunnel_pids(nonces), "the orphaned tunnels should still be alive here"
    sudo_hub.start()
    for user in users:
        time_to_answer(sudo_hub, user, timeout=60)
        assert sudo_hub.job_of(user) == jobs[user]
    # only the new hub's tunnels are left: one each, all below the new hub's one keeper
    tops = {n: tunnel_tops(n) for n in nonces}
    assert all(len(t) == 1 for t in tops.values()), tops
    (keeper,) = {parent_of(t) for found in tops.values() for t in found}
    assert keeper not in keepers
    assert set(tunnel_pids(nonces)) <= set(descendants(keeper)), [
        cmdline(p) for p in tunnel_pids(nonces)
    ]


def test_a_hub_restarted_while_the_schedd_is_down_keeps_the_session(
    sudo_hub, system_pool, unix_users
):
    """JupyterHub's start-up check stops every server that does not answer over HTTP in
    time; no tunnel can be made while the schedd does not answer. The session (its
    kernel) must outlive both: the user sees why, and gets it back when the schedd does."""
    user = unix_users("k")
    sudo_hub.spawn(user, {})
    job = sudo_hub.job_of(user)
    status, kernel = sudo_hub.api(
        "POST", f"/user/{user}/api/kernels", {"name": "python3"}, through_proxy=True, timeout=60
    )
    assert status == 201, kernel
    schedd = system_pool.run("condor_status", "-schedd", "-af", "Name").stdout.strip()
    sudo_hub.stop()
    assert system_pool.schedd_off(schedd)
    try:
        sudo_hub.start()

        def waiting_page() -> bool:
            status, text = sudo_hub.api("GET", f"/user/{user}/lab", through_proxy=True)
            return status == 424 and f"job {job}" in text and "does not answer" in text

        wait_until(waiting_page, 60, "the server's port answering while the schedd is off")
        assert not server_gone(sudo_hub, user)
    finally:
        assert system_pool.schedd_on(schedd)
    time_to_answer(sudo_hub, user, timeout=60)
    assert sudo_hub.job_of(user) == job
    _, kernels = sudo_hub.api("GET", f"/user/{user}/api/kernels", through_proxy=True)
    assert kernel["id"] in [k["id"] for k in kernels]


def test_a_held_job_is_finished_not_forgotten(sudo_hub, system_pool, unix_users):
    """Issue 16.2: a hold behind the hub's back: the server is reported stopped only after
    the hub removed the job (its files back) and closed the tunnel; the reason reaches the
    user; the next spawn leaves one job."""
    user = unix_users("i")
    sudo_hub.spawn(user, {})
    job = sudo_hub.job_of(user)
    n = nonce(user)
    work = Path(pwd.getpwnam(user).pw_dir) / "jupyter"
    status, _ = sudo_hub.api(
        "PUT",
        f"/user/{user}/api/contents/kept.txt",
        {"type": "file", "format": "text", "content": "kept"},
        through_proxy=True,
    )
    assert status in (200, 201)
    held = system_pool.run("condor_hold", "-reason", "quota exceeded", job, user=user)
    assert held.returncode == 0, held.stderr
    wait_until(lambda: server_gone(sudo_hub, user), 30, "the hub noticed the hold")
    wait_until(
        lambda: system_pool.ad(job)["JobStatus"] in (3, 4) or not sudo_hub.job_of(user),
        20,
        "the held job removed",
    )
    assert sudo_hub.job_of(user) is None
    assert (work / "kept.txt").read_text() == "kept"
    wait_until(lambda: not tunnel_pids([n]), 15, "the tunnel closed")
    _, model = sudo_hub.api("GET", f"/users/{user}?include_stopped_servers=1")
    state = json.dumps(model)
    assert "quota exceeded" in state, model
    sudo_hub.spawn(user, {})
    assert (
        len(
            system_pool.run(
                "condor_q", "-allusers", "-af", "ClusterId", "-constraint", f'Owner == "{user}"'
            ).stdout.split()
        )
        == 1
    )


def test_stop_never_removes_a_job_whose_files_are_not_back(sudo_hub, system_pool, unix_users):
    """Issue 16.3: condor_rm fails: the job stays (held, files back), the state keeps it, the
    stop fails with a message; the next start ends it first: never two jobs."""
    user = unix_users("j")
    sudo_hub.spawn(user, {})
    job = sudo_hub.job_of(user)
    flag = sudo_hub.flag("fail", "condor_rm")
    try:
        sudo_hub.api("DELETE", f"/users/{user}/server")
        wait_until(lambda: system_pool.ad(job)["JobStatus"] == 5, 30, "the job held")
        time.sleep(3)
        assert system_pool.ad(job)["JobStatus"] == 5  # held, not removed
        assert "it is kept" in sudo_hub.log_tail(200)
    finally:
        flag.unlink()
    _, model = sudo_hub.api("GET", f"/users/{user}?include_stopped_servers=1")
    assert job in json.dumps(model), model  # the saved state still names the job
    sudo_hub.spawn(user, {})
    assert sudo_hub.job_of(user) != job
    wait_until(lambda: system_pool.ad(job)["JobStatus"] in (3, 4), 20, "the old job removed")


def test_a_lost_submit_answer_loses_no_job(sudo_hub, system_pool, unix_users):
    """Issue 16.5: condor_submit queues the job but its answer comes after the timeout:
    the spawn finds its job by the spawn mark; one job, and it is the server's."""
    user = unix_users("k")
    config = sudo_hub.root / "site.toml"
    config.write_text(config.read_text().replace("[pool]\n", "[pool]\ncommand_timeout = 3\n"))
    sudo_hub.stop()
    sudo_hub.start()
    flag = sudo_hub.flag("slow", "condor_submit", "6")
    try:
        sudo_hub.spawn(user, {})
    finally:
        flag.unlink()
    jobs = system_pool.run(
        "condor_q", "-allusers", "-af", "ClusterId", "-constraint", f'Owner == "{user}"'
    ).stdout.split()
    assert len(jobs) == 1, jobs
    assert sudo_hub.api("GET", f"/user/{user}/api/status", through_proxy=True)[0] == 200


def test_named_servers_have_their_own_directories(sudo_hub, system_pool, unix_users):
    """Issue 16.9: a default server and a named one called "default" share nothing;
    deleting the named server for good removes what the hub kept for it."""
    user = unix_users("l")
    config = sudo_hub.root / "jupyterhub_config.py"
    config.write_text(config.read_text() + "c.JupyterHub.allow_named_servers = True\n")
    sudo_hub.stop()
    sudo_hub.start()
    sudo_hub.spawn(user, {})
    sudo_hub.api("POST", f"/users/{user}/servers/default", {"user_options": {}})
    wait_until(
        lambda: sudo_hub.api("GET", f"/users/{user}")[1]["servers"].get("default", {}).get("ready"),
        60,
        "the named server ready",
    )
    assert submit_dir(user) != submit_dir(user, "default")
    assert (submit_dir(user) / "job.sub").exists()
    assert (submit_dir(user, "default") / "job.sub").exists()
    home = Path(pwd.getpwnam(user).pw_dir)
    assert (home / "jupyter").is_dir() and (home / "jupyter-default").is_dir()
    status, _ = sudo_hub.api("DELETE", f"/users/{user}/servers/default", {"remove": True})
    assert status in (202, 204)
    wait_until(lambda: not submit_dir(user, "default").exists(), 30, "named files removed")
    assert (submit_dir(user) / "job.sub").exists()


@pytest.mark.slow  # 20 s of the default run's 15 minutes; CI's slow tier runs it
def test_no_session_directories_pile_up(sudo_hub, system_pool, unix_users):
    """Issue 16.10: spawns, stops and a killed tunnel leave no condor_ssh_to_job session
    directories behind."""
    user = unix_users("m")
    for _ in range(2):
        sudo_hub.spawn(user, {})
        n = nonce(user)
        ssh = [p for p in tunnel_pids([n]) if program(p) == "ssh"]
        for pid in ssh:
            os.kill(pid, signal.SIGKILL)  # condor_ssh_to_job's own cleanup runs
        time_to_answer(sudo_hub, user, timeout=30)
        sudo_hub.api("DELETE", f"/users/{user}/server")
        wait_until(lambda: server_gone(sudo_hub, user), 60, "the server stopped")
    assert ssh_session_dirs(user) == []


def test_a_forged_job_attribute_changes_no_ssh_option(sudo_hub, system_pool, unix_users):
    """Issue 11.2: the job's owner sets the old port attributes to ssh options
    (condor_qedit); the hub's next tunnel carries none of it."""
    user = unix_users("n")
    sudo_hub.spawn(user, {})
    job = sudo_hub.job_of(user)
    for attr, value in (
        ("HubApiPort", '"1 -oProxyCommand=touch /tmp/pwned-forge"'),
        ("NotebookPort", '"-oLocalCommand=x"'),
        ("CondorSpawnerEndpoint", '"/etc -oProxyCommand=x"'),
    ):
        forged = system_pool.run("condor_qedit", job, attr, value, user=user)
        assert forged.returncode == 0, forged.stderr
    n = nonce(user)
    for pid in tunnel_pids([n]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time_to_answer(sudo_hub, user, timeout=60)
    commands = " ".join(cmdline(p) for p in tunnel_pids([n]))
    assert "ProxyCommand=touch" not in commands and "LocalCommand" not in commands
    assert not Path("/tmp/pwned-forge").exists()


def test_the_private_file_goes_when_the_job_ends(sudo_hub, system_pool, unix_users):
    """Issue 11.5: the job gets only the site settings it uses; the hub's copy of the
    private file is removed once the job is over."""
    user = unix_users("o")
    sudo_hub.spawn(user, {})
    secret = submit_dir(user) / "condorspawner.secret"
    site = json.loads(secret.read_text())["site"] or ""
    assert "run_as" not in site and "bin_dir" not in site and "[notebook]" not in site
    assert "limits" in site
    sudo_hub.api("DELETE", f"/users/{user}/server")
    wait_until(lambda: server_gone(sudo_hub, user), 60, "the server stopped")
    assert not secret.exists()


@pytest.mark.parametrize("system_pool", ["shared"], indirect=True)
def test_the_notebook_listens_on_no_port_of_the_execute_point(sudo_hub, system_pool, unix_users):
    """Issue 16.7 / 11.3: nothing to squat: the server in the job binds no TCP port of its
    own for the browser (only its Unix socket); the launcher holds the hub-API port."""
    user = unix_users("p")
    sudo_hub.spawn(user, {})
    uid = pwd.getpwnam(user).pw_uid
    out = subprocess.run(["ss", "-Hltnpe"], capture_output=True, text=True, check=True).stdout
    servers = [line for line in out.splitlines() if f"uid:{uid}" in line]
    assert all("jupyterhub-sing" not in line for line in servers), servers
    sock = [p for p in Path("/tmp").glob("condorspawner-*") if p.lstat().st_uid == uid]
    assert sock and oct(sock[0].lstat().st_mode & 0o777) == "0o700"
    # the launcher (the same user) holds the hub-API port the server talks to
    assert any("python" in line for line in servers), servers


def test_the_local_port_is_held_and_the_route_follows_a_new_one(sudo_hub, system_pool, unix_users):
    """Issues 16.8 and 22.1: another account waits for the tunnel's local port while the
    tunnel is killed: the hub holds it, the session comes back on it. Only while no hub
    runs is it free; a squatter who takes it then is left behind: the restarted hub
    attaches on another port and the proxy's route follows; the job lives on."""
    user = unix_users("q")
    sudo_hub.spawn(user, {})
    job = sudo_hub.job_of(user)
    _, model = sudo_hub.api("GET", f"/users/{user}")
    old_port = model["servers"][""]["state"]["local_port"]
    waiting = squatter(old_port, 8)
    for pid in tunnel_pids([nonce(user)]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert waiting.wait(timeout=30) == 3, "another account bound the held port"
    time_to_answer(sudo_hub, user, timeout=90)
    assert sudo_hub.api("GET", f"/users/{user}")[1]["servers"][""]["state"]["local_port"] == (
        old_port
    )
    sudo_hub.stop()
    squat = squatter(old_port, 10)
    try:
        assert squat.stdout.readline().startswith("bound")
        sudo_hub.start()
        time_to_answer(sudo_hub, user, timeout=90)
        _, model = sudo_hub.api("GET", f"/users/{user}")
        assert model["servers"][""]["state"]["local_port"] != old_port, model
        assert sudo_hub.job_of(user) == job
        assert "moved to port" in sudo_hub.log_tail(300)
    finally:
        squat.kill()
        squat.wait()


def page_or_status(hub, user: str, path: str = "/api/status") -> tuple[int, object]:
    try:
        return hub.api("GET", f"/user/{user}{path}", through_proxy=True, timeout=10)
    except OSError as err:
        return 0, str(err)


@pytest.mark.slow
def test_a_tunnel_that_cannot_come_back_keeps_the_job_and_shows_a_page(sudo_hub, unix_users):
    """Issue 23.4: every attach fails for longer than the attach timeout (condor_ssh_to_job
    refused, as in a CCB hiccup): the job runs on, the user's URL gives the reconnecting
    page; once attaches work again, the same kernel answers."""
    hub = sudo_hub
    config = hub.root / "jupyterhub_config.py"
    config.write_text(
        config.read_text()
        + "c.CondorSpawner.http_timeout = 20\nc.CondorSpawner.tunnel_max_restarts = 1\n"
    )
    hub.stop()
    hub.start()
    user = unix_users("r")
    hub.spawn(user, {})
    job = hub.job_of(user)
    status, kernel = hub.api("POST", f"/user/{user}/api/kernels", {}, through_proxy=True)
    assert status == 201, kernel
    refused = hub.flag("fail", "condor_ssh_to_job")
    try:
        for pid in tunnel_pids([nonce(user)]):
            if program(pid) == "ssh":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: "re-established" in str(page_or_status(hub, user)[1]),
            60,
            "the reconnecting page",
        )
        wait_until(
            lambda: "the job is kept, its port answers with a page" in hub.log_tail(200),
            60,
            "a failed re-attach that keeps the job",
        )
        time.sleep(25)  # longer than the attach timeout again
        assert page_or_status(hub, user)[0] == 424
        assert hub.job_of(user) == job, hub.log_tail(80)
    finally:
        refused.unlink()
    wait_until(
        lambda: page_or_status(hub, user, f"/api/kernels/{kernel['id']}")[0] == 200,
        120,
        "the same kernel through a new tunnel",
    )
    assert hub.job_of(user) == job


# localpool shows the window for 3 s; the real schedd for a moment (its start-job timer)
DATED_LATE = {"network": "isolated", "start_options": ("--shadow-delay", "3")}


@pytest.mark.parametrize("system_pool", [DATED_LATE], indirect=True)
def test_the_tunnel_goes_to_the_run_the_schedd_dated(sudo_hub, system_pool, unix_users):
    """The schedd marks a started job running (JobStatus 2) before it dates the run
    (JobCurrentStartDate, when it spawns the shadow): an ad in between names no run, or
    the previous one. The hub waits for the date, on the first run and after an eviction
    (real pool, CI: a spawn's tunnel went to the undated run's directory for 60 s)."""
    hub, pool = sudo_hub, system_pool
    ivan = unix_users("i")
    hub.spawn(ivan, {})
    job = hub.job_of(ivan)
    first = pool.wait_for(job, lambda a: a.get("JobCurrentStartDate"))["JobCurrentStartDate"]
    assert pool.run("condor_vacate_job", job).returncode == 0
    pool.wait_for(job, lambda a: a.get("JobCurrentStartDate", first) > first, timeout=90)
    time_to_answer(hub, ivan, timeout=60)
