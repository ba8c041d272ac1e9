"""P1 spawn overhead, P2 schedd load, P4 memory: CondorSpawner beside batchspawner 1.3's.

Both sides run as a site runs a hub: JupyterHub as root on a localpool started by
root and installed under a prefix, one real account per benchmark user, every tool
run as that user through sudo. CondorSpawner through the site file's ``run_as``
(``sudo -n -u {user}``) and ``bin_dir``; batchspawner through its own ``exec_prefix``
(``sudo -E -u {username}``, its default) in front of its ``condor_submit``,
``condor_q`` and ``condor_rm``, named by absolute path (sudo's ``secure_path``
replaces the PATH it would pass). Both spawn the same instant stand-in server, so
the time from the spawn request to the server answering through the hub is all
overhead. batchspawner has no tunnel: its pool runs with network isolation off
and the hub connects to the job directly; ours runs as designed, jobs in their
own namespaces, reached through condor_ssh_to_job. For P2 both poll at the same
interval.
"""

from __future__ import annotations

import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.common import (
    STANDIN,
    hub_pid,
    rss_kb,
    running,
    site_pool,
    sudo_hub,
    timings,
    tunnel_processes,
)
from tests.harness import Hub


def ours_config(interval: float) -> str:
    """CondorSpawner with the stand-in server, polling every ``interval`` seconds."""
    return (
        f"c.CondorSpawner.launcher_args = ['--server', "
        f"{sys.executable + ' ' + str(STANDIN)!r}]\n"
        f"c.CondorSpawner.queue_poll_interval = {interval}\n"
        f"c.Spawner.poll_interval = {interval}\n"
    )


def batchspawner_config(shim: Path, interval: float) -> str:
    """batchspawner's CondorSpawner with its own sudo and its own commands, the tools
    named by absolute path (the hub's counting shim over the pool's installed tools)."""
    venv_bin = Path(sys.executable).parent
    return f"""
import batchspawner  # registers batchspawner's port-report API handler

c.JupyterHub.spawner_class = batchspawner.CondorSpawner
# exec_prefix stays batchspawner's default, "sudo -E -u {{username}}"; sudo's secure_path
# replaces PATH, so each of its commands is prefixed with the tools' directory
for _trait in ("batch_submit_cmd", "batch_query_cmd", "batch_cancel_cmd"):
    setattr(
        c.CondorSpawner,
        _trait,
        "{shim}/" + getattr(batchspawner.CondorSpawner, _trait).default_value,
    )
# JupyterHub 6 passes only JUPYTERHUB_SINGLEUSER_APP on; batchspawner runs its shell
# command with the spawner's environment (sudo -E keeps it; GetEnv gives the job the same)
c.CondorSpawner.env_keep = ["PATH", "LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]
c.CondorSpawner.req_memory = "512"
c.CondorSpawner.req_nprocs = "1"
c.CondorSpawner.state_exechost_exp = "127.0.0.1"
c.CondorSpawner.batchspawner_singleuser_cmd = "{venv_bin / "batchspawner-singleuser"}"
c.CondorSpawner.cmd = ["{STANDIN}"]
c.Spawner.poll_interval = {interval}
c.Spawner.start_timeout = 120
"""


def time_to_answer(hub: Hub, user: str, timeout: float = 120) -> float:
    """Seconds from the spawn request to the server answering through the hub's proxy."""
    started = time.monotonic()
    hub.request_spawn(user, {})
    deadline = started + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{hub.url}/user/{user}/", timeout=2) as response:
                if response.status == 200 and response.read() == b"ok":
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    raise SystemExit(f"{user}'s server never answered through {hub.url}\n{hub.log_tail()}")


def measure(hub: Hub, users: list[str], spawns: int, window: float, interval: float) -> dict:
    """P1 (the first ``spawns`` users one at a time), P2 (condor_q per interval with every
    user's session running) and P4 (hub memory and tunnel processes per session)."""
    time.sleep(1)
    idle_rss = rss_kb(hub_pid(hub))
    latencies = [time_to_answer(hub, user) for user in users[:spawns]]
    split = timings(hub)
    for start in range(spawns, len(users), 10):
        batch = users[start : start + 10]
        for user in batch:
            hub.request_spawn(user, {})
        for user in batch:
            hub.wait_ready(user, timeout=300)
    time.sleep(interval)  # settle: pending spawns poll faster
    before = hub.count_calls()
    time.sleep(window)
    after = hub.count_calls()
    calls = {k: after[k] - before[k] for k in after}
    hub_rss = rss_kb(hub_pid(hub))
    tunnels = tunnel_processes(hub)
    sessions = len(users)
    return {
        "spawn_seconds": latencies,
        "split": split,
        "hub_MB_per_session": (hub_rss - idle_rss) / 1024 / sessions,
        "tunnel_MB_per_session": sum(rss_kb(p) for p, _ in tunnels) / 1024 / sessions,
        "condor_q_per_interval": calls["condor_q"] / (window / interval),
        "condor_history_per_interval": calls["condor_history"] / (window / interval),
    }


def run(
    *, spawns: int, sessions: int, window: float, interval: float, backend: str = "localpool"
) -> dict:
    """Both sides, each on its own pool with ``sessions`` accounts (removed after); on
    localpool or on the real HTCondor (``backend``, its jobs on the shared loopback)."""
    results = {}
    for name, network in (("condorspawner", "isolated"), ("batchspawner", "shared")):
        with site_pool(sessions, network=network, backend=backend) as (base, pool, users):
            root = base / "hub"
            extra = (
                ours_config(interval)
                if name == "condorspawner"
                else batchspawner_config(root / "shim", interval)
            )
            with running(sudo_hub(root, pool, extra)) as hub:
                results[name] = measure(hub, users, spawns, window, interval)
    ours, theirs = results["condorspawner"], results["batchspawner"]
    results["ratio_spawn_median"] = statistics.median(ours["spawn_seconds"]) / statistics.median(
        theirs["spawn_seconds"]
    )
    results["ratio_condor_q"] = ours["condor_q_per_interval"] / max(
        theirs["condor_q_per_interval"], 1e-9
    )
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(spawns=3, sessions=5, window=10, interval=2), indent=1))
