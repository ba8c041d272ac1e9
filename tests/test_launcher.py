"""condorspawner-singleuser: the private file, the rendezvous directory, the hub relay."""

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from condorspawner.jobad import run_dated
from condorspawner.launcher import (
    hub_relay,
    hub_sockets,
    private_directory,
    read_secret,
    server_command,
    terminal_settings,
)
from condorspawner.protocol import JobSecret, ProtocolError, Rendezvous
from condorspawner.quoting import submit_arguments
from tests.sessions import NOBODY
from tests.waiting import wait_until

STANDIN = Path(__file__).resolve().parents[1] / "benchmarks" / "standin_server.py"


def unix_get(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return s.recv(1000)


def test_launcher_serves_on_its_socket_and_stops_before_the_runtime_limit(pool):
    meeting = Rendezvous.new()
    secret = pool.submit_dir / "condorspawner.secret"
    secret.write_text(
        JobSecret(env={"JUPYTERHUB_SERVICE_PREFIX": "/user/x/"}, rendezvous=meeting).dumps()
    )
    secret.chmod(0o600)
    arguments = submit_arguments(
        ["-m", "condorspawner.launcher", "--grace", "2", "--server", f"{sys.executable} {STANDIN}"]
    )
    job = pool.submit(f"""
        executable = {sys.executable}
        transfer_executable = false
        arguments = {arguments}
        transfer_input_files = condorspawner.secret
        should_transfer_files = YES
        MY.MaxRuntime = 6
        output = launcher.out
        error = launcher.err
        log = launcher.log
        queue
    """)
    # running, and dated: the schedd sets JobCurrentStartDate just after JobStatus = 2
    ad = pool.wait_for(job, lambda a: a["JobStatus"] == 2 and run_dated(a), timeout=20)
    meeting = meeting.for_run(ad["JobCurrentStartDate"])  # one directory per run of the job
    sock = Path(meeting.notebook_socket)
    wait_until(sock.exists, 20, "the launcher's server listens on its socket")
    assert oct(Path(meeting.directory).stat().st_mode & 0o777) == "0o700"
    assert oct(sock.stat().st_mode & 0o777) in ("0o600", "0o755", "0o777")
    # a tunnel's hub socket arrives (as ssh -R would make it): the server keeps running
    hub = socket.socket(socket.AF_UNIX)
    hub.bind(meeting.hub_socket("0123456789abcdef"))
    hub.listen()
    try:
        assert unix_get(str(sock)).startswith(b"HTTP/1.0 200")
        # stopped by the launcher 2 s before the 6 s limit: a normal exit, not a hold
        ad = pool.wait_for(job, lambda a: a["JobStatus"] in (4, 5), timeout=30)
    finally:
        hub.close()
    assert (ad["JobStatus"], ad["ExitCode"]) == (4, 0), (
        pool.submit_dir / "launcher.err"
    ).read_text()
    assert secret.exists()  # the hub's copy; the job's copy was read and removed in the job
    assert not Path(meeting.directory).exists()  # the launcher cleans up after itself


def test_the_private_file_is_read_once_and_checked(tmp_path):
    meeting = Rendezvous.new()
    path = tmp_path / "secret"
    path.write_text(JobSecret(env={"A": "b"}, rendezvous=meeting).dumps())
    assert read_secret(path).rendezvous == meeting and not path.exists()
    for bad in ('{"env": {"A": 1}, "rendezvous": {"nonce": "00"}}', "not json", "{}"):
        with pytest.raises(ProtocolError):
            JobSecret.loads(bad)


def shared_account_job(tmp_path, monkeypatch, accept: bool) -> list[str]:
    """The launcher's arguments for a job whose ad names another account as its Owner
    (the site runs jobs as nobody, as slot users or under a pilot)."""
    ad = tmp_path / ".job.ad"
    ad.write_text('Owner = "somebody-else"\nJobCurrentStartDate = 1700000000\n')
    monkeypatch.setenv("_CONDOR_JOB_AD", str(ad))
    monkeypatch.chdir(tmp_path)
    meeting = Rendezvous.new()  # its directory goes when the server ends
    secret = JobSecret(
        env={"JUPYTERHUB_API_TOKEN": "t0k3n"},
        rendezvous=meeting,
        hub_api="direct",
        shared_account=accept,
    )
    (tmp_path / "secret").write_text(secret.dumps())
    return ["--secret", str(tmp_path / "secret"), "--server", "true"]


def test_a_job_not_running_as_its_owner_is_refused(tmp_path, monkeypatch, capsys):
    """Issue 22.2: the server's isolation (its 0700 directory, its socket, the relay's
    peer check) is by uid; when the job's uid is not its Owner's account, another user's
    job may share it, so the server does not start unless the site accepts that."""
    from condorspawner.launcher import main

    with pytest.raises(SystemExit, match="not as its owner somebody-else"):
        main(shared_account_job(tmp_path, monkeypatch, accept=False))
    assert not (tmp_path / "secret").exists()  # nothing of the secret left behind either


def test_a_site_may_accept_jobs_in_a_shared_account(tmp_path, monkeypatch, capsys):
    from condorspawner.launcher import main

    assert main(shared_account_job(tmp_path, monkeypatch, accept=True)) == 0
    assert "notebook.shared_job_accounts" in capsys.readouterr().err  # said, not silent


def test_a_private_file_without_a_hub_must_carry_the_labs_token():
    """hub_api "none" (condorsub lab): JupyterLab's only guard is JUPYTER_TOKEN; without it
    the server would make a token of its own that nobody on the submit side knows."""
    meeting = Rendezvous.new()
    lab = JobSecret(env={"JUPYTER_TOKEN": "t0k3n"}, rendezvous=meeting, hub_api="none")
    assert JobSecret.loads(lab.dumps()).hub_api == "none"
    for env in ({}, {"JUPYTER_TOKEN": ""}):
        text = lab.dumps().replace('"JUPYTER_TOKEN": "t0k3n"', json.dumps(env)[1:-1])
        with pytest.raises(ProtocolError, match="JUPYTER_TOKEN"):
            JobSecret.loads(text)
        with pytest.raises(ProtocolError, match="JUPYTER_TOKEN"):
            JobSecret(env=env, rendezvous=meeting, hub_api="none")
    with pytest.raises(ProtocolError, match="hub_api"):
        JobSecret(env={}, rendezvous=meeting, hub_api="sideways")


def test_a_rendezvous_directory_that_is_not_ours_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "condorspawner-x"
    link.symlink_to(target)
    with pytest.raises(SystemExit, match="not this user's private directory"):
        private_directory(link)
    # our own leftover from an earlier run on this machine: cleared and reused
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    (mine / "hub-0123456789abcdef.sock").write_text("stale")
    assert private_directory(mine) == mine and not list(mine.iterdir())
    assert oct(mine.stat().st_mode & 0o777) == "0o700"


async def test_the_relay_follows_the_newest_live_tunnel(tmp_path):
    """Each tunnel generation has its own socket; a dead one is skipped and removed."""
    relay = hub_relay(tmp_path)
    port = await relay.listen()
    answers = []

    async def hub(name: str):
        async def handle(reader, writer):
            writer.write(name.encode())
            await writer.drain()
            writer.close()

        return await asyncio.start_unix_server(handle, str(tmp_path / f"hub-{name}.sock"))

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = await reader.read()
        writer.close()
        return data

    assert not hub_sockets(tmp_path)
    old = await hub("aaaaaaaaaaaaaaaa")
    answers.append(await ask())
    await asyncio.sleep(0.05)
    new = await hub("bbbbbbbbbbbbbbbb")
    answers.append(await ask())
    new.close()
    await new.wait_closed()
    # the newest tunnel died (its socket file left behind): back to the older one
    (tmp_path / "hub-bbbbbbbbbbbbbbbb.sock").touch()
    os.utime(tmp_path / "hub-bbbbbbbbbbbbbbbb.sock")
    answers.append(await ask())
    old.close()
    assert answers == [b"aaaaaaaaaaaaaaaa", b"bbbbbbbbbbbbbbbb", b"aaaaaaaaaaaaaaaa"]
    assert not (tmp_path / "hub-bbbbbbbbbbbbbbbb.sock").exists()


async def test_a_hub_call_before_the_tunnel_waits_for_it(tmp_path):
    """jupyterhub-singleuser gives up on the hub after five tries (about 45 s): a call made
    while the hub is still opening a slow pool's tunnel is held until the tunnel comes."""
    relay = hub_relay(tmp_path, patience=20)
    port = await relay.listen()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hub/api HTTP/1.0\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.3)

    async def hub(reader, writer):
        asked = await reader.read(100)
        writer.write(b"hub saw " + asked.split(b"\r")[0])
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(hub, str(tmp_path / "hub-aaaaaaaaaaaaaaaa.sock"))
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b"hub saw GET /hub/api HTTP/1.0"
    finally:
        writer.close()
        server.close()


async def test_the_relay_serves_only_its_own_users_processes(tmp_path):
    """On a shared loopback another account's process reaches nothing through the relay."""
    relay = hub_relay(tmp_path)
    port = await relay.listen()

    async def hub(reader, writer):
        writer.write(b"hub answer")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(hub, str(tmp_path / "hub-aaaaaaaaaaaaaaaa.sock"))
    client = (
        f"import socket; s = socket.create_connection(('127.0.0.1', {port})); s.settimeout(5); "
        "print(s.recv(100))"
    )

    async def ask(*prefix: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, "-c", client, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        return out.decode().strip()

    try:
        assert await ask() == "b'hub answer'"
        assert await ask(*NOBODY) == "b''"
    finally:
        server.close()


def test_a_private_directory_others_can_enter_is_refused(tmp_path):
    mine = tmp_path / "open"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    with pytest.raises(SystemExit, match="private directory"):
        private_directory(mine)


def test_the_server_is_jupyterhub_singleuser_with_a_hub_and_jupyter_lab_without(tmp_path):
    hub = server_command("/d/nb.sock", ["--x=1"])
    lab = server_command("/d/nb.sock", ["--x=1"], hub=False)
    assert Path(hub[0]).name == "jupyterhub-singleuser" and Path(lab[0]).name == "jupyter-lab"
    assert hub[1:] == lab[1:] and lab[1:4] == ["--sock=/d/nb.sock", "--sock-mode=0600", "--x=1"]
    given = server_command("/d/nb.sock", ["--x=1"], "my-server --a", hub=False)
    assert given == ["my-server", "--a", "--sock=/d/nb.sock", "--x=1"]


def test_terminals_get_the_login_shell_and_condorsubs_directory_in_the_work_directory(tmp_path):
    env: dict[str, str] = {}
    args = terminal_settings(tmp_path, env)
    assert env["CONDORSUB_JOBS"] == str(tmp_path / "condorsub-jobs") and env["SHELL"]
    assert args == [
        f"--ServerApp.terminado_settings={json.dumps({'shell_command': [env['SHELL']]})}"
    ]
    site = {"CONDORSUB_JOBS": "/elsewhere"}  # the site's environment wins
    terminal_settings(tmp_path, site)
    assert site["CONDORSUB_JOBS"] == "/elsewhere"
