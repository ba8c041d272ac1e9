"""proxy_tunnel against a job in its own network namespace on localpool."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from condorspawner.protocol import Rendezvous, new_generation
from proxy_tunnel import (
    LocalPortTaken,
    Tunnel,
    TunnelError,
    answers_http,
    free_port,
    free_ports,
)
from proxy_tunnel.procs import alive, descendants
from tests.sessions import NOBODY, cmdline, kept_tops, squatter
from tests.waiting import wait_until_async

SERVER = """\
import glob, http.client, http.server, os, socket, socketserver, sys
DIRECTORY = sys.argv[1]
class UnixHTTP(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(max(glob.glob(DIRECTORY + "/hub-*.sock"), key=os.path.getmtime))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/via-hub":
            conn = UnixHTTP("hub")
            conn.request("GET", "/")
            body = conn.getresponse().read()
        else:
            body = b"in-job:" + os.environ["_CONDOR_SCRATCH_DIR"].encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    do_HEAD = do_GET
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    def get_request(self):
        return self.socket.accept()[0], ("unix", 0)
os.makedirs(DIRECTORY, mode=0o700)
S(DIRECTORY + "/nb.sock", H).serve_forever()
"""


@pytest.fixture
def web_job(pool):
    """A running job with an HTTP server on a Unix socket inside it; yields (job, rendezvous)."""
    meeting = Rendezvous.new()
    (pool.submit_dir / "server.py").write_text(SERVER)
    job = pool.submit(f"""
        executable = {sys.executable}
        transfer_executable = false
        arguments = server.py {meeting.directory}
        transfer_input_files = server.py
        should_transfer_files = YES
        output = server.out
        error = server.err
        queue
    """)
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    yield job, meeting
    pool.run("condor_rm", job)
    shutil.rmtree(meeting.directory, ignore_errors=True)  # the server never cleans up


def fetch(port: int, path: str = "/") -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()


def ssh_children(tunnel: Tunnel) -> list[int]:
    """The ssh processes of the tunnel's command."""
    tree = descendants(tunnel._process.pid)
    return [p for p in tree if open(f"/proc/{p}/comm").read().strip() == "ssh"]


async def test_forward_reverse_restart_and_close(pool, web_job, host_server):
    job, meeting = web_job
    listening: list[float] = []
    tunnel = Tunnel(
        job,
        meeting.notebook_socket,
        fresh_reverse=lambda: (meeting.hub_socket(new_generation()), "127.0.0.1", host_server),
        env=pool.env,
        on_listening=lambda: listening.append(time.monotonic()),
    )
    await tunnel.start()
    assert len(listening) == 1  # the forward listened before the server answered
    try:
        body = await asyncio.to_thread(fetch, tunnel.local_port)
        assert body.startswith(b"in-job:") and b"/execute/dir_" in body
        # the job reaches a server on the hub side only through the reverse forward
        assert await asyncio.to_thread(fetch, tunnel.local_port, "/via-hub") == (
            b"hello from the host"
        )
        # the tunnel's ssh dies: the supervisor brings the forward back, same job
        group = tunnel._process.pid
        (victim,) = ssh_children(tunnel)
        os.kill(victim, signal.SIGKILL)

        async def back() -> bool:  # how soon: benchmarks.faults
            return tunnel._process.pid != group and await answers_http(tunnel.local_port, 0.5)

        await wait_until_async(back, 10, "the forward is back after its ssh was killed", 0.1)
        assert tunnel.restarts == 1 and not tunnel.failed
        await asyncio.sleep(0.5)
        assert len(listening) == 1  # a restart is not a start: nobody is told again
        assert (await asyncio.to_thread(fetch, tunnel.local_port)).startswith(b"in-job:")
    finally:
        top = tunnel._process.pid
        tree = descendants(top)
        await tunnel.close()
    # every process of the tunnel is gone (killed ones may take a moment to be reaped)
    await wait_until_async(
        lambda: not any(alive(p) for p in [top, *tree]),
        5,
        lambda: (
            "the tunnel's processes are gone: "
            + subprocess.run(
                ["ps", "-o", "pid,stat,cmd", "-p", ",".join(map(str, [top, *tree]))],
                capture_output=True,
                text=True,
            ).stdout
        ),
        0.1,
    )
    assert not await answers_http(tunnel.local_port, 0.5)


@pytest.mark.skipif(os.geteuid() != 0, reason="the squatter runs as another account")
async def test_another_account_never_gets_the_local_port_when_the_ssh_dies(pool, web_job):
    """Issue 22.1: another local account waits for the tunnel's port to be free (IPv4,
    dual-stack IPv6, v4-mapped) while the tunnel's ssh is killed: it never binds it, and
    the proxy's requests still reach the job once the tunnel is back."""
    job, meeting = web_job
    tunnel = Tunnel(job, meeting.notebook_socket, env=pool.env)
    await tunnel.start()
    squat = squatter(tunnel.local_port, 8)
    try:
        await asyncio.sleep(0.5)
        (ssh,) = ssh_children(tunnel)
        os.kill(ssh, signal.SIGKILL)

        async def back() -> bool:
            return tunnel.restarts == 1 and await answers_http(tunnel.local_port, 0.5)

        await wait_until_async(back, 15, "the forward is back after its ssh was killed", 0.1)
        got, _ = await asyncio.to_thread(squat.communicate, timeout=30)
        assert (squat.returncode, got) == (3, ""), got
        assert (await asyncio.to_thread(fetch, tunnel.local_port)).startswith(b"in-job:")
    finally:
        squat.kill()
        squat.wait()
        await tunnel.close()


FLAKY = """\
import socket, sys, time
ssh = sys.argv[sys.argv.index("-ssh") + 1].split()
local = ssh[ssh.index("-L") + 1]
if not local.startswith("/"):  # before issue 22.1: 127.0.0.1:PORT:REMOTE
    family, address = socket.AF_INET, ("127.0.0.1", int(local.split(":")[1]))
else:
    family, address = socket.AF_UNIX, local.split(":")[0]
s = socket.socket(family)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(address)
s.listen()
s.settimeout(0.2)
until = time.monotonic() + 0.8
while time.monotonic() < until:
    try:
        c, _ = s.accept()
    except TimeoutError:
        continue
    c.recv(1000)
    c.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\n")
    c.close()
sys.exit(1)
"""


async def test_a_forward_that_keeps_dropping_is_given_up_at_its_limit():
    """Issue 22.1: each restart succeeds and the forward drops again soon after: the
    supervisor stops after max_restarts drops (the review saw "restart 15 of 5")."""
    gave_up: list[str] = []

    async def give_up(why: str) -> None:
        gave_up.append(why)

    tunnel = Tunnel(
        "7.0",
        "/tmp/x/nb.sock",
        program=[sys.executable, "-c", FLAKY],
        max_restarts=2,
        on_give_up=give_up,
        ready_timeout=10,
    )
    await tunnel.start()
    try:
        await wait_until_async(lambda: tunnel.failed or tunnel.restarts > 4, 15, "a give-up", 0.1)
        assert tunnel.failed and tunnel.restarts == 3, (tunnel.restarts, tunnel.failure)
        assert gave_up == [tunnel.failure] and "dropped 3 times" in tunnel.failure
    finally:
        await tunnel.close()


async def test_attaches_at_once_leave_one_tunnel(pool, web_job):
    """Issue 23.1: JupyterHub may poll while another poll (or start) attaches: the
    attachment opens one tunnel at a time, and none is left running unowned."""
    from condorspawner.attach import Attachment

    job, meeting = web_job
    attachment = Attachment(
        job_id=job, rendezvous=meeting, program=["condor_ssh_to_job"], hub_api=None, env=pool.env
    )
    try:
        ports = await asyncio.gather(*(attachment.open(None) for _ in range(3)))
        assert len(set(ports)) == 1
        tops = kept_tops(meeting.tag)
        assert len(tops) == 1, [cmdline(p) for p in tops]
        assert (await asyncio.to_thread(fetch, ports[0])).startswith(b"in-job:")
    finally:
        await attachment.close()


async def test_a_cancelled_start_leaves_no_process_and_no_port():
    """Issue 23.1: a spawn cancelled while its tunnel comes up (JupyterHub's start
    timeout, a stop) leaves neither the command's tree nor the local port behind."""
    tunnel = Tunnel("7.0", "/tmp/x/nb.sock", program=["bash", "-c", "sleep 60 & wait", "sh"])
    starting = asyncio.create_task(tunnel.start())
    await wait_until_async(lambda: tunnel._process, 5, "the command started", 0.1)
    top, port = tunnel._process.pid, tunnel.local_port
    # cancelled with the whole tree up: the command and what it started
    tree = await wait_until_async(lambda: descendants(top), 5, "the command's child", 0.1)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await wait_until_async(
        lambda: not any(alive(p) for p in [top, *tree]), 5, "the tunnel's processes gone", 0.1
    )
    with socket.socket() as again:  # the port is free again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


STRANGER = """\
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen()
print("ready", flush=True)
while True:
    c = s.accept()[0]
    c.recv(100)
    c.sendall(b"stranger")
    c.close()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the stranger runs as another account")
async def test_a_symlink_in_the_sockets_place_leads_the_hub_nowhere(public_tmp):
    """The tunnel's socket directory is the user's own: they may put a symlink where their
    ssh listens, pointing at another account's socket, which root (the hub) could reach.
    The relay connects only where the expected account's process listens (SO_PEERCRED)."""
    from proxy_tunnel import SocketRelay

    shared = public_tmp / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    theirs, link = shared / "theirs.sock", public_tmp / "fwd-0123456789abcdef.sock"
    stranger = subprocess.Popen(
        [*NOBODY, sys.executable, "-c", STRANGER, str(theirs)], stdout=subprocess.PIPE, cwd="/"
    )
    try:
        assert stranger.stdout.readline() == b"ready\n"
        link.symlink_to(theirs)

        async def through(owner):
            relay = SocketRelay(lambda: [str(link)], owner=owner)
            port = await relay.listen()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            got = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            await relay.close()
            return got

        assert await through(None) == b"stranger"  # what an unchecked relay reaches
        assert await through(os.getuid()) == b""
        assert not await answers_http(str(link), 2.0, os.getuid())
    finally:
        stranger.kill()
        stranger.wait()


async def test_a_job_that_is_not_there_fails_clearly(pool):
    tunnel = Tunnel("4242.0", free_port(), env=pool.env, ready_timeout=5)
    with pytest.raises(TunnelError, match="no longer in the queue"):
        await tunnel.start()


async def test_the_command_is_an_argument_list():
    program = ["sudo", "-n", "-u", "alice", "condor_ssh_to_job", "-name", "ap1"]
    tunnel = Tunnel(
        "7.0",
        "/tmp/d/nb.sock",
        local_port=9999,
        reverse=(7777, "127.0.0.1", 8081),
        program=program,
        socket_dir="/run/cs/1000",
    )
    command = tunnel.command()
    assert command[-3:] == ["-ssh", tunnel.ssh_command(), "7.0"]
    assert command[-3 - len(program) : -3] == program
    assert command == [*program, "-ssh", tunnel.ssh_command(), "7.0"]  # the keeper runs it
    # ssh listens on a socket of this generation in the private directory, not on 9999
    assert tunnel.forward.startswith("/run/cs/1000/fwd-") and tunnel.forward.endswith(".sock")
    assert tunnel.ssh_command().startswith(
        f"ssh -N -L {tunnel.forward}:/tmp/d/nb.sock -R 127.0.0.1:7777:127.0.0.1:8081 "
        "-oExitOnForwardFailure=yes -oServerAliveInterval=15 -oServerAliveCountMax=3"
    )


@pytest.mark.parametrize("bad", ["/tmp/x -oProxyCommand=evil", "-oFoo", "/a:b", 0, 70000, True])
def test_no_value_becomes_an_ssh_option(bad):
    """A forward end is a port number or a plain absolute socket path, nothing else."""
    with pytest.raises(ValueError):
        Tunnel("7.0", bad, local_port=9999).ssh_command()


async def test_a_local_port_held_by_another_account_is_never_taken_for_ready():
    """Another account on the hub listens on the local port and answers HTTP first:
    the tunnel refuses it at once instead of routing a user's traffic there."""
    port = free_port()
    listener = subprocess.Popen(
        [
            *NOBODY,
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
    )
    try:
        await wait_until_async(lambda: answers_http(port, 0.5), 10, "the other account's server")
        tunnel = Tunnel(
            "7.0",
            "/tmp/x/nb.sock",
            local_port=port,
            program=[sys.executable, "-c", "import time; time.sleep(60)"],
            ready_timeout=60,
        )
        started = time.monotonic()
        with pytest.raises(LocalPortTaken):
            await tunnel.start()
        assert time.monotonic() - started < 30  # at once, not after the ready timeout
    finally:
        listener.kill()
        listener.wait()


async def test_with_a_config_file_the_forwards_stay_off_the_command_line(tmp_path):
    written = tmp_path / "tunnel.ssh_config"

    async def write(text: str) -> str:
        written.write_text(text)
        return str(written)

    tunnel = Tunnel(
        "7.0",
        "/tmp/condorspawner-abc/nb.sock",
        reverse=("/tmp/condorspawner-abc/hub-1.sock", "127.0.0.1", 8081),
        program=[sys.executable, "-c", "import time; time.sleep(30)"],
        ssh_options=("-oSetEnv=TAG=x",),
        config_writer=write,
        ready_timeout=1,
    )
    with pytest.raises(TunnelError):
        await tunnel.start()  # nothing answers: what matters is what was run
    command = " ".join(tunnel.command())
    assert f"-F {written}" in command and "-oSetEnv=TAG=x" in command
    assert "condorspawner-abc" not in command
    local, remote = written.read_text().splitlines()[:2]
    assert re.fullmatch(
        r"LocalForward /\S+/fwd-[0-9a-f]{16}\.sock /tmp/condorspawner-abc/nb.sock", local
    )
    assert "fwd-" not in command
    assert remote == "RemoteForward /tmp/condorspawner-abc/hub-1.sock 127.0.0.1:8081"


def test_ports_picked_together_are_all_different():
    """A hub's port, its hub port and its proxy's API port, picked one by one, were once
    the same: the proxy took the hub's port, the hub exited and the proxy asked itself for
    its error page forever (CI). The kernel picks each free port at random, so 800 picks one
    by one repeat one almost surely; picked together they are all different."""
    ports = free_ports(800)
    assert len(set(ports)) == len(ports) == 800
    assert all(1024 <= port < 65536 for port in ports)
