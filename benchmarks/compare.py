"""P1 spawn overhead and P2 schedd load: CondorSpawner beside batchspawner 1.3's CondorSpawner.

Both hubs are real JupyterHubs with configurable-http-proxy on localpool, both
spawn the same instant stand-in server, so the time from the spawn request to
the server answering through the hub is all overhead. batchspawner has no
tunnel: it runs on a pool without network namespaces and the hub connects to
the job directly; ours runs as designed, jobs in their own namespaces,
reached through condor_ssh_to_job. For P2 both poll at the same interval.
"""

from __future__ import annotations

import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.common import STANDIN, descendants, hub_pid, rss_kb, start_pool, timings
from tests.harness import Hub


def ours_config(interval: float) -> str:
    return (
        f"c.CondorSpawner.launcher_args = ['--server', "
        f"{sys.executable + ' ' + str(STANDIN)!r}]\n"
        f"c.CondorSpawner.queue_poll_interval = {interval}\n"
        f"c.Spawner.poll_interval = {interval}\n"
    )


def batchspawner_config(home: Path, interval: float) -> str:
    venv_bin = Path(sys.executable).parent
    return f"""
import batchspawner  # registers batchspawner's port-report API handler


from traitlets import default


class BenchCondorSpawner(batchspawner.CondorSpawner):
    # the benchmark's users have no system accounts (batchspawner looks them up)
    @default("req_homedir")
    def _bench_home(self):
        return "{home}"

    def user_env(self, env):
        env.update(USER=self.user.name, HOME=self.req_homedir, SHELL="/bin/sh")
        return env


c.JupyterHub.spawner_class = BenchCondorSpawner
# JupyterHub 6 passes only JUPYTERHUB_SINGLEUSER_APP on; batchspawner runs condor_submit
# with the spawner's environment, so it needs PATH (and GetEnv gives the job the same)
c.BenchCondorSpawner.env_keep = ["PATH", "LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]
c.BenchCondorSpawner.exec_prefix = ""
c.BenchCondorSpawner.req_memory = "512"
c.BenchCondorSpawner.req_nprocs = "1"
c.BenchCondorSpawner.state_exechost_exp = "127.0.0.1"
c.BenchCondorSpawner.batchspawner_singleuser_cmd = "{venv_bin / "batchspawner-singleuser"}"
c.BenchCondorSpawner.cmd = ["{STANDIN}"]
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


def measure(hub: Hub, spawns: int, sessions: int, window: float, interval: float) -> dict:
    """P1 (spawns one at a time), P2 (condor_q per interval with `sessions` running) and
    P4 (hub memory per session)."""
    time.sleep(1)
    idle_rss = rss_kb(hub_pid(hub))
    latencies = [time_to_answer(hub, f"one{n}") for n in range(spawns)]
    split = timings(hub)
    for start in range(spawns, sessions, 10):
        batch = [f"u{n}" for n in range(start, min(start + 10, sessions))]
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
    hub_side = [
        p
        for p, comm in descendants(hub_pid(hub))
        if comm not in ("sshd", "node", "setpriv", "nsenter")
    ]
    return {
        "spawn_seconds": latencies,
        "split": split,
        "hub_MB_per_session": (hub_rss - idle_rss) / 1024 / sessions,
        "tunnel_MB_per_session": sum(rss_kb(p) for p in hub_side) / 1024 / sessions,
        "condor_q_per_interval": calls["condor_q"] / (window / interval),
        "condor_history_per_interval": calls["condor_history"] / (window / interval),
    }


def run(root: Path, *, spawns: int, sessions: int, window: float, interval: float) -> dict:
    results = {}
    for name, namespaces in (("condorspawner", "auto"), ("batchspawner", "off")):
        pool = start_pool(root / name, sessions, namespaces)
        extra = (
            ours_config(interval)
            if name == "condorspawner"
            else batchspawner_config(root / name / "home", interval)
        )
        (root / name / "home").mkdir(exist_ok=True)
        hub = Hub(root / name / "hub", pool, extra_config=extra)
        try:
            hub.start()
            results[name] = measure(hub, spawns, sessions, window, interval)
        finally:
            hub.stop()
            pool.localpool("stop", "--remove-jobs")
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
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(Path(tmp), spawns=3, sessions=5, window=10, interval=2), indent=1))
