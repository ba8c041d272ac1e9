"""CondorSpawner's own figures, with a real JupyterHub and proxy, as a site runs the hub.

Run (as root): python benchmarks/spawner_bench.py [--sessions 100] [--real 5] [--window 60]

JupyterHub runs as root on a localpool started by root and installed under a
prefix, and acts for one real account per session (made for the run, removed
after) through the site's ``run_as = ["sudo", "-n", "-u", "{user}"]``.

1. Spawn time, split (from the spawner's "spawn timings" log line): submit,
   queue wait, tunnel up, server answering; with the real
   jupyterhub-singleuser, and with an instant stand-in server, whose total is
   the overhead beyond the notebook server's own start (target <= 1 s median).
2. Schedd load: condor_q / condor_history calls while --sessions sessions run,
   over --window seconds (target: at most one condor_q per watcher interval).
3. Hub memory per session: hub RSS growth (target 8 MB), and the tunnel
   processes on the hub side per session: the hub's one keeper (shared by every
   tunnel) and everything below it (sudo, and as the user condor_ssh_to_job, ssh, the proxy helper).
   localpool's condor_ssh_to_job and proxy helper are Python stand-ins, larger
   than HTCondor's C++ tools: they are reported apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (
    SPLIT,
    STANDIN,
    hub_pid,
    pss_kb,
    rss_kb,
    running,
    site_pool,
    sudo_hub,
    timings,
    tunnel_processes,
)
from tests.harness import Hub


def spawn_all(hub: Hub, users: list[str], batch: int) -> None:
    """Spawn ``batch`` servers at a time, each batch ready before the next."""
    for i in range(0, len(users), batch):
        group = users[i : i + batch]
        for user in group:
            hub.request_spawn(user, {})
        for user in group:
            hub.wait_ready(user, timeout=300)


def table(rows: list[tuple[str, list[float], str]]) -> None:
    print(f"{'figure':<64} {'median':>9} {'min':>8} {'max':>8}  target")
    for name, values, target in rows:
        print(
            f"{name:<64} {statistics.median(values):>9.3f} {min(values):>8.3f} "
            f"{max(values):>8.3f}  {target}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument(
        "--real",
        type=int,
        default=5,
        help="spawns one at a time, with jupyterhub-singleuser and with an instant stand-in server",
    )
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=5.0, help="watcher interval (s)")
    args = parser.parse_args()
    if not 0 < args.real <= args.sessions:
        parser.error("--real must be between 1 and --sessions")
    # accounts: --real for the real servers, --sessions for the stand-in hub
    with site_pool(args.real + args.sessions) as (base, pool, users):
        real_users, users = users[: args.real], users[args.real :]
        # 1. real notebook servers
        with running(sudo_hub(base / "hub-real", pool)) as real:
            for user in real_users:
                real.spawn(user)
            real_times = timings(real)
        pool.run("condor_rm", "-all")
        # 2. + 3. many sessions with an instant stand-in server
        extra = (
            f"c.CondorSpawner.launcher_args = ['--server', "
            f"{sys.executable + ' ' + str(STANDIN)!r}]\n"
            f"c.CondorSpawner.queue_poll_interval = {args.interval}\n"
            "c.Spawner.poll_interval = 30\n"
        )
        with running(sudo_hub(base / "hub", pool, extra)) as hub:
            time.sleep(2)
            base_rss = rss_kb(hub_pid(hub))
            # one at a time: the overhead of a spawn, without the others' contention
            for user in users[: args.real]:
                hub.spawn(user)
            standin_times = timings(hub)
            started = time.monotonic()
            spawn_all(hub, users[args.real :], batch=10)
            spawn_seconds = time.monotonic() - started
            before = hub.count_calls()
            time.sleep(args.window)
            after = hub.count_calls()
            hub_rss = rss_kb(hub_pid(hub))
            tunnel = tunnel_processes(hub)
            by_program: dict[str, list[int]] = {}
            for pid, comm in tunnel:
                by_program.setdefault(comm, []).append(rss_kb(pid))
            tunnel_pss = sum(pss_kb(p) for p, _ in tunnel)
    n = args.sessions
    labels = (*SPLIT, "total")
    rows = []
    for i, label in enumerate(labels):
        rows.append(
            (
                f"real singleuser: {label} (s)",
                [t[i] for t in real_times],
                "" if label != "total" else "(the server's own start included)",
            )
        )
    for i, label in enumerate(labels):
        rows.append(
            (
                f"instant server, one at a time: {label} (s)",
                [t[i] for t in standin_times],
                "<= 1.0 median" if label == "total" else "",
            )
        )
    table(rows)
    calls = {k: after[k] - before[k] for k in after}
    expected = args.window / args.interval
    print(f"\n{n - args.real} more sessions spawned in {spawn_seconds:.1f} s (batches of 10)")
    print(
        f"schedd load over {args.window:.0f} s with {n} sessions, watcher interval "
        f"{args.interval:g} s: condor_q {calls['condor_q']} calls "
        f"({calls['condor_q'] / expected:.2f} per interval; target <= 1), "
        f"condor_history {calls['condor_history']}"
    )
    print(
        f"hub process RSS: {base_rss / 1024:.1f} MB idle, {hub_rss / 1024:.1f} MB with {n} "
        f"sessions: {(hub_rss - base_rss) / 1024 / n:.2f} MB per session (target <= 8)"
    )
    tunnel_rss = sum(sum(v) for v in by_program.values())
    parts = ", ".join(
        f"{comm} {len(v) / n:.1f} x {sum(v) / len(v) / 1024:.1f} MB"
        for comm, v in sorted(by_program.items())
    )
    print(
        f"hub-side tunnel processes ({len(tunnel)}, {len(tunnel) / n:.1f} per session): "
        f"RSS {tunnel_rss / 1024 / n:.1f} MB, PSS {tunnel_pss / 1024 / n:.1f} MB per session; "
        f"per session: {parts} (python: the keeper, shared; condor_ssh_to_j: localpool's Python "
        "stand-ins for condor_ssh_to_job and its -proxy helper)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
