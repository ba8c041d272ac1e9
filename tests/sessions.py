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
