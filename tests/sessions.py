"""A spawned session seen from outside: its files, its tunnel's processes, bounded waits.

Shared by the end-to-end tests and benchmarks/faults.py; every lookup is limited to
the sessions a test made (by their rendezvous), never the machine's other hubs.
"""

from __future__ import annotations

import json
import pwd
import time
from pathlib import Path

from proxy_tunnel.procs import alive, command_line, processes_carrying


def submit_dir(user: str, server: str = "") -> Path:
    base = Path(pwd.getpwnam(user).pw_dir) / ".condorspawner"
    return base / "named" / server if server else base / "default"


def nonce(user: str, server: str = "") -> str:
    """The spawn's rendezvous nonce, from the job's private file on the hub."""
    secret = json.loads((submit_dir(user, server) / "condorspawner.secret").read_text())
    return secret["rendezvous"]["nonce"]


def tunnel_pids(nonces: list[str]) -> list[int]:
    """Live processes of these spawns' tunnels (keeper, sudo, condor_ssh_to_job, ssh):
    they carry the spawn's tag on their command lines."""
    from condorspawner.protocol import Rendezvous

    pids = []
    for n in nonces:
        pids += [p for p in processes_carrying(Rendezvous(n).tag) if alive(p)]
    return pids


def cmdline(pid: int) -> str:
    return " ".join(command_line(pid))


def program(pid: int) -> str:
    return Path((command_line(pid) or [""])[0]).name


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def server_gone(hub, user: str, server: str = "") -> bool:
    _, model = hub.api("GET", f"/users/{user}")
    return server not in model["servers"]


def ssh_session_dirs(user: str) -> list[Path]:
    return list(Path("/tmp").glob(f"{user}.condor_ssh_to_job_*"))


def wait_ready(hub, user: str, timeout: float = 15) -> float:
    """Seconds until the user's server answers through the proxy again (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            status, _ = hub.api("GET", f"/user/{user}/api/status", through_proxy=True, timeout=3)
        except OSError:  # no answer in time (e.g. while the route is down): not yet
            status = None
        if status == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{user}'s server not reachable within {timeout} s\n{hub.log_tail()}")


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
                pass
        sys.exit(0)
    time.sleep(0.001)
sys.exit(3)
"""


def squatter(port: int, seconds: float):
    """Another account trying, for ``seconds``, to bind ``port`` on 127.0.0.1, dual-stack
    ``[::]`` and v4-mapped; it prints ``bound ...`` if it gets it, else exits 3."""
    import subprocess
    import sys

    command = [*NOBODY, sys.executable, "-c", SQUATTER, str(port), str(seconds)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd="/")
