"""proxy_tunnel against a job in its own network namespace on localpool."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from proxy_tunnel import Tunnel, TunnelError, answers_http, free_port

SERVER = """\
import http.server, socketserver, htchirp, os, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/via-hub":
            with htchirp.HTChirp() as chirp:
                port = chirp.get_job_attr("HubApiPort")
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        else:
            body = b"in-job:" + os.environ["_CONDOR_SCRATCH_DIR"].encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    do_HEAD = do_GET
    def log_message(self, *a): pass
s = socketserver.TCPServer(("127.0.0.1", 0), H)
with htchirp.HTChirp() as c:
    c.set_job_attr("NotebookPort", str(s.server_address[1]))
s.serve_forever()
"""


@pytest.fixture
def web_job(pool):
    """A running job with an HTTP server on 127.0.0.1 inside it; yields (job id, port)."""
    (pool.submit_dir / "server.py").write_text(SERVER)
    job = pool.submit(f"""
        executable = {sys.executable}
        transfer_executable = false
        arguments = server.py
        transfer_input_files = server.py
        should_transfer_files = YES
        want_io_proxy = true
        MY.HubApiPort = {free_port()}
        output = server.out
        error = server.err
        queue
    """)
    ad = pool.wait_for(job, lambda a: a.get("NotebookPort"))
    return job, ad["NotebookPort"], ad["HubApiPort"]


def fetch(port: int, path: str = "/") -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()


def group_alive(group: int) -> bool:
    """Does any live (not zombie) process remain in this process group?"""
    out = subprocess.run(
        ["ps", "-o", "stat=", "-g", str(group)], capture_output=True, text=True, check=False
    ).stdout
    return any(not state.startswith("Z") for state in out.split())


def ssh_children(tunnel: Tunnel) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-g", str(tunnel._process.pid), "-x", "ssh"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [int(p) for p in out.split()]


async def test_forward_reverse_restart_and_close(pool, web_job, host_server):
    job, port, hub_port = web_job
    tunnel = Tunnel(job, port, reverse=(hub_port, "127.0.0.1", host_server), env=pool.env)
    await tunnel.start()
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
        assert (await asyncio.to_thread(fetch, tunnel.local_port)).startswith(b"in-job:")
    finally:
        group = tunnel._process.pid
        await tunnel.close()
    # every process of the tunnel's group is gone (killed ones may take a moment to be reaped)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and group_alive(group):
        await asyncio.sleep(0.1)
    assert not group_alive(group), subprocess.run(
        ["ps", "-o", "pid,stat,cmd", "-g", str(group)], capture_output=True, text=True
    ).stdout
    assert not await answers_http(tunnel.local_port, 0.5)


async def test_a_job_that_is_not_there_fails_clearly(pool):
    tunnel = Tunnel("4242.0", free_port(), env=pool.env, ready_timeout=5)
    with pytest.raises(TunnelError, match="no longer in the queue"):
        await tunnel.start()


async def test_the_command_is_an_argument_list():
    program = ["sudo", "-n", "-u", "alice", "condor_ssh_to_job", "-name", "ap1"]
    tunnel = Tunnel(
        "7.0", 8888, local_port=9999, reverse=(7777, "127.0.0.1", 8081), program=program
    )
    command = tunnel.command()
    assert command[-3:] == ["-ssh", tunnel.ssh_command(), "7.0"]
    assert command[-3 - len(program) : -3] == program
    assert tunnel.ssh_command().startswith(
        "ssh -N -L 127.0.0.1:9999:127.0.0.1:8888 -R 127.0.0.1:7777:127.0.0.1:8081 "
        "-oExitOnForwardFailure=yes -oServerAliveInterval=15 -oServerAliveCountMax=3"
    )
