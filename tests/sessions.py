"""A spawned session seen from outside: its files, its tunnel's processes, bounded waits,
and code run in it as its user would (a kernel, a terminal, through the hub's proxy).

Shared by the end-to-end tests and benchmarks/faults.py; every lookup is limited to
the sessions a test made (by their rendezvous), never the machine's other hubs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pwd
import re
import uuid
from pathlib import Path

from proxy_tunnel.procs import alive, command_line, parent_of, processes_carrying
from tests.harness import HUB_TOKEN
from tests.waiting import seconds_until


def submit_dir(user: str, server: str = "") -> Path:
    base = Path(pwd.getpwnam(user).pw_dir) / ".condorspawner"
    return base / "named" / server if server else base / "default"


def nonce(user: str, server: str = "") -> str:
    """The spawn's rendezvous nonce, from the job's private file on the hub."""
    secret = json.loads((submit_dir(user, server) / "condorspawner.secret").read_text())
    return secret["rendezvous"]["nonce"]


def tunnel_pids(nonces: list[str]) -> list[int]:
    """Live processes of these spawns' tunnels (sudo, condor_ssh_to_job, ssh):
    they carry the spawn's tag on their command lines."""
    from condorspawner.protocol import Rendezvous

    pids = []
    for n in nonces:
        pids += [p for p in processes_carrying(Rendezvous(n).tag) if alive(p)]
    return pids


def kept_tops(tag: str) -> list[int]:
    """The tunnels carrying ``tag`` now: the commands a keeper runs (one per tunnel; a
    command's child between fork and exec still shows the command's line, below it)."""
    found = processes_carrying(tag)
    return [p for p in found if alive(p) and "proxy_tunnel.keeper" in cmdline(parent_of(p) or 0)]


def tunnel_tops(session_nonce: str) -> list[int]:
    """A spawn's tunnels now (:func:`kept_tops` of its tag): one while all is well."""
    from condorspawner.protocol import Rendezvous

    return kept_tops(Rendezvous(session_nonce).tag)


def cmdline(pid: int) -> str:
    return " ".join(command_line(pid))


def program(pid: int) -> str:
    return Path((command_line(pid) or [""])[0]).name


def server_gone(hub, user: str, server: str = "") -> bool:
    _, model = hub.api("GET", f"/users/{user}")
    return server not in model["servers"]


def ssh_session_dirs(user: str) -> list[Path]:
    return list(Path("/tmp").glob(f"{user}.condor_ssh_to_job_*"))


def answers(hub, user: str) -> bool:
    """Whether the user's own server answers through the hub's proxy now: jupyter-server's
    status (or the benchmarks' stand-in's "ok"), not a page of the hub's while pending."""
    try:
        status, body = hub.api("GET", f"/user/{user}/api/status", through_proxy=True, timeout=3)
    except OSError:  # no answer in time (e.g. while the route is down): not yet
        return False
    return status == 200 and (body == "ok" or (isinstance(body, dict) and "started" in body))


def time_to_answer(hub, user: str, timeout: float = 15) -> float:
    """Seconds until the user's server answers through the proxy again (bounded)."""
    return seconds_until(
        lambda: answers(hub, user), timeout, lambda: f"{user}'s server answers\n{hub.log_tail()}"
    )


NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")  # another account
SQUATTER = """\
import socket, sys, time
port, until = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
ways = [
    (socket.AF_INET, ("127.0.0.1", port), None),
    (socket.AF_INET6, ("::", port), 0),  # dual-stack: 0.0.0.0 and [::] at once
    (socket.AF_INET6, ("::ffff:127.0.0.1", port), 0),
]
while time.monotonic() < until:
    for family, address, v6only in ways:
        s = socket.socket(family)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past closed connections
        if v6only is not None:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        try:
            s.bind(address)
            s.listen()
        except OSError:
            s.close()
            continue
        print("bound", address, flush=True)
        while time.monotonic() < until:  # what reaches the squatter is cut off at once
            s.settimeout(max(0.01, until - time.monotonic()))
            try:
                s.accept()[0].close()
            except OSError:
                continue
            print("connection", flush=True)
        sys.exit(0)
    time.sleep(0.001)
sys.exit(3)
"""


def squatter(port: int, seconds: float):
    """Another account trying, for ``seconds``, to bind ``port`` on 127.0.0.1, dual-stack
    ``[::]`` and v4-mapped; if it gets it, it prints ``bound ...`` and then a line
    ``connection`` for each connection that reaches it, else it exits 3."""
    import subprocess
    import sys

    command = [*NOBODY, sys.executable, "-c", SQUATTER, str(port), str(seconds)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd="/")


def _message(msg_type: str, user: str, content: dict) -> tuple[str, str]:
    """(msg_id, the JSON of a shell-channel message)."""
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "username": user,
        "session": uuid.uuid4().hex,
        "version": "5.3",
    }
    return msg_id, json.dumps(
        {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "content": content,
        }
    )


async def run_in_kernel(hub, user: str, kernel_id: str, code: str, timeout: float = 60) -> str:
    """Execute code in a kernel through the hub's proxy (websocket) and return its stdout.

    The kernel's output channel (iopub) must be live before the code runs, or its
    output is lost on a busy machine: a kernel_info_request is repeated until its
    status message arrives on iopub."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = f"ws://127.0.0.1:{hub.port}/user/{user}/api/kernels/{kernel_id}/channels"
    request = HTTPRequest(url, headers={"Authorization": f"token {HUB_TOKEN}"})
    ws = await websocket_connect(request)
    out: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            await _iopub_live(ws, user)
            msg_id, execute = _message(
                "execute_request",
                user,
                {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                },
            )
            ws.write_message(execute)
            while (raw := await ws.read_message()) is not None:
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    out.append("\n".join(msg["content"]["traceback"]))
                elif kind == "status" and msg["content"].get("execution_state") == "idle":
                    break  # after its last output (iopub keeps order; the reply may come first)
    except TimeoutError:
        raise AssertionError(f"the code did not end within {timeout} s; it printed {out}") from None
    finally:
        ws.close()
    return "".join(out)


async def _iopub_live(ws, user: str) -> None:
    """Ask for the kernel's info every 5 s until the answer's status shows on iopub."""
    while True:
        info_id, info = _message("kernel_info_request", user, {})
        ws.write_message(info)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while True:
                    raw = await ws.read_message()
                    if raw is None:
                        raise AssertionError("the kernel's websocket closed")
                    msg = json.loads(raw)
                    parent = msg.get("parent_header", {}).get("msg_id")
                    if parent == info_id and msg.get("channel") == "iopub":
                        return


def start_kernel(hub, user: str) -> str:
    status, kernel = hub.api(
        "POST", f"/user/{user}/api/kernels", {"name": "python3"}, through_proxy=True, timeout=60
    )
    assert status == 201, (status, kernel)
    return kernel["id"]


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
    try:
        async with asyncio.timeout(timeout):
            while not re.search(until, seen[echoed:]):
                raw = await ws.read_message()
                if raw is None:
                    break
                kind, *rest = json.loads(raw)
                if kind == "stdout":
                    seen += rest[0]
    except TimeoutError:
        pass  # what it showed is in the failure below
    finally:
        ws.close()
    assert re.search(until, seen[echoed:]), (
        f"no {until!r} on the terminal within {timeout:g} s:\n{seen}"
    )
    return seen
