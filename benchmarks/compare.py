"""P1 spawn overhead, P2 schedd load, P4 memory: CondorSpawner beside batchspawner 1.3's.

Both sides run as a site runs a hub: JupyterHub as root on a localpool started by
root and installed under a prefix, one real account per benchmark user, every tool
run as that user through sudo. CondorSpawner through the site file's ``run_as``
(``sudo -n -u {user}``) and ``bin_dir``; batchspawner through its own ``exec_prefix``
(``sudo -E -u {username}``, its default) in front of its ``condor_submit``,
``condor_q`` and ``condor_rm``, named by absolute path (sudo's ``secure_path``
replaces the PATH it would pass). Both spawn the same server: an instant stand-in,
so the time from the spawn request to the server answering through the hub is all
overhead, or the real jupyterhub-singleuser, whose own start hides some of it (ours
makes the tunnel while the server starts). Each spawn is also split by its job's ad,
the same for both. batchspawner has no tunnel: its pool runs with network isolation off
and the hub connects to the job directly; ours runs as designed, jobs in their
own namespaces, reached through condor_ssh_to_job. For P2 both poll at the same
interval.
"""

from __future__ import annotations

import statistics
import sys
import time
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
from tests.sessions import answers
from tests.waiting import wait_until

SERVERS = ("stand-in", "jupyterhub-singleuser")  # what both spawners start in the job


def ours_config(interval: float, server: str = "stand-in") -> str:
    """CondorSpawner with the stand-in (or the real) server, polling every ``interval``
    seconds."""
    standin = f"c.CondorSpawner.launcher_args = ['--server', {f'{sys.executable} {STANDIN}'!r}]\n"
    return (
        (standin if server == "stand-in" else "")
        + f"c.CondorSpawner.queue_poll_interval = {interval}\n"
        + f"c.Spawner.poll_interval = {interval}\n"
    )


def batchspawner_config(shim: Path, interval: float, server: str = "stand-in") -> str:
    """batchspawner's CondorSpawner with its own sudo and its own commands, the tools
    named by absolute path (the hub's counting shim over the pool's installed tools)."""
    venv_bin = Path(sys.executable).parent
    cmd = STANDIN if server == "stand-in" else venv_bin / "jupyterhub-singleuser"
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
c.CondorSpawner.cmd = ["{cmd}"]
c.Spawner.poll_interval = {interval}
c.Spawner.start_timeout = 120
"""


AD_SPLIT = ("request to job start", "job start to answer")


def time_to_answer(hub: Hub, user: str, timeout: float = 120) -> float:
    """Seconds from the spawn request to the server answering through the hub's proxy."""
    started = time.monotonic()
    hub.request_spawn(user, {})
    what = lambda: f"{user}'s server answers through {hub.url}\n{hub.log_tail()}"  # noqa: E731
    wait_until(lambda: answers(hub, user), timeout, what, 0.02)
    return time.monotonic() - started


def ad_split(hub: Hub, user: str, requested: float, answered: float) -> tuple[float, ...]:
    """The same parts for either spawner (``AD_SPLIT``), at the job's
    JobCurrentStartDate (the schedd's clock, whole seconds: each part is +-1 s)."""
    out = hub.pool.run(
        "condor_q", "-allusers", "-constraint", f'Owner == "{user}"', "-af", "JobCurrentStartDate"
    ).stdout.split()
    started = float(out[0])
    return (started - requested, answered - started)


def measure(hub: Hub, users: list[str], spawns: int, window: float, interval: float) -> dict:
    """P1 (the first ``spawns`` users one at a time, each split by its job's ad), P2
    (condor_q per interval with every user's session running) and P4 (hub memory and
    tunnel processes per session)."""
    time.sleep(1)
    idle_rss = rss_kb(hub_pid(hub))
    latencies, by_ad = [], []
    for user in users[:spawns]:
        requested = time.time()
        latencies.append(time_to_answer(hub, user))
        by_ad.append(ad_split(hub, user, requested, requested + latencies[-1]))
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
        "ad_split": by_ad,
        "hub_MB_per_session": (hub_rss - idle_rss) / 1024 / sessions,
        "tunnel_MB_per_session": sum(rss_kb(p) for p, _ in tunnels) / 1024 / sessions,
        "condor_q_per_interval": calls["condor_q"] / (window / interval),
        "condor_history_per_interval": calls["condor_history"] / (window / interval),
    }


def run(
    *,
    spawns: int,
    sessions: int,
    window: float,
    interval: float,
    backend: str = "localpool",
    pool_config: str = "",
    server: str = "stand-in",
) -> dict:
    """Both sides, each on its own pool with ``sessions`` accounts (removed after); on
    localpool or on the real HTCondor (``backend``, its jobs on the shared loopback,
    ``pool_config`` added to its configuration); both start ``server`` (``SERVERS``)."""
    results = {}
    for name, network in (("condorspawner", "isolated"), ("batchspawner", "shared")):
        pool_options = {"network": network, "backend": backend, "pool_config": pool_config}
        with site_pool(sessions, **pool_options) as (base, pool, users):
            root = base / "hub"
            extra = (
                ours_config(interval, server)
                if name == "condorspawner"
                else batchspawner_config(root / "shim", interval, server)
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
