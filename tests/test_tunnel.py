"""proxy_tunnel against a job in its own network namespace on localpool."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from condorspawner.protocol import Rendezvous, new_generation
from proxy_tunnel import LocalPortTaken, Tunnel, TunnelError, answers_http, free_port
from proxy_tunnel.procs import alive, descendants

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
    """The ssh processes below the tunnel's keeper."""
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
        killed = time.monotonic()
        deadline = killed + 10
        while time.monotonic() < deadline:
            if tunnel._process.pid != group and await answers_http(tunnel.local_port, 0.5):
                break
            await asyncio.sleep(0.1)
        assert time.monotonic() - killed < 5
        assert tunnel.restarts == 1 and not tunnel.failed
        await asyncio.sleep(0.5)
        assert len(listening) == 1  # a restart is not a start: nobody is told again
        assert (await asyncio.to_thread(fetch, tunnel.local_port)).startswith(b"in-job:")
    finally:
        keeper = tunnel._process.pid
        tree = descendants(keeper)
        await tunnel.close()
    # every process of the tunnel is gone (killed ones may take a moment to be reaped)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in [keeper, *tree]):
        await asyncio.sleep(0.1)
    assert not [p for p in [keeper, *tree] if alive(p)], subprocess.run(
        ["ps", "-o", "pid,stat,cmd", "-p", ",".join(map(str, [keeper, *tree]))],
        capture_output=True,
        text=True,
    ).stdout
    assert not await answers_http(tunnel.local_port, 0.5)


async def test_a_job_that_is_not_there_fails_clearly(pool):
    tunnel = Tunnel("4242.0", free_port(), env=pool.env, ready_timeout=5)
    with pytest.raises(TunnelError, match="no longer in the queue"):
        await tunnel.start()


async def test_the_command_is_an_argument_list():
    program = ["sudo", "-n", "-u", "alice", "condor_ssh_to_job", "-name", "ap1"]
    tunnel = Tunnel(
        "7.0", "/tmp/d/nb.sock", local_port=9999, reverse=(7777, "127.0.0.1", 8081), program=program
    )
    command = tunnel.command()
    assert command[-3:] == ["-ssh", tunnel.ssh_command(), "7.0"]
    assert command[-3 - len(program) : -3] == program
    assert command[1:4] == ["-I", "-m", "proxy_tunnel.keeper"]
    assert tunnel.ssh_command().startswith(
        "ssh -N -L 127.0.0.1:9999:/tmp/d/nb.sock -R 127.0.0.1:7777:127.0.0.1:8081 "
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
    squatter = subprocess.Popen(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not await answers_http(port, 0.5):
            await asyncio.sleep(0.1)
        tunnel = Tunnel(
            "7.0",
            "/tmp/x/nb.sock",
            local_port=port,
            program=[sys.executable, "-c", "import time; time.sleep(30)"],
            owners=frozenset({os.getuid()}),
            ready_timeout=10,
        )
        started = time.monotonic()
        with pytest.raises(LocalPortTaken):
            await tunnel.start()
        assert time.monotonic() - started < 5
    finally:
        squatter.kill()
        squatter.wait()


async def test_with_a_config_file_the_forwards_stay_off_the_command_line(tmp_path):
    written = tmp_path / "tunnel.ssh_config"

    async def write(text: str) -> str:
        written.write_text(text)
        return str(written)

    tunnel = Tunnel(
        "7.0",
        "/tmp/condorspawner-abc/nb.sock",
        local_port=9999,
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
    assert written.read_text().splitlines()[:2] == [
        "LocalForward 127.0.0.1:9999 /tmp/condorspawner-abc/nb.sock",
        "RemoteForward /tmp/condorspawner-abc/hub-1.sock 127.0.0.1:8081",
    ]
