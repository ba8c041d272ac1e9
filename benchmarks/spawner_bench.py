"""CondorSpawner's own figures, on localpool with a real JupyterHub and proxy.

Run: python benchmarks/spawner_bench.py [--sessions 100] [--real 3] [--window 60]

1. Spawn time, split (from the spawner's "spawn timings" log line): submit,
   queue wait, launcher start, tunnel and server; with the real
   jupyterhub-singleuser, and with an instant stand-in server, whose total is
   the overhead beyond the notebook server's own start (target <= 1 s median).
2. Schedd load: condor_q / condor_history calls while --sessions sessions run,
   over --window seconds (target: at most one condor_q per watcher interval).
3. Hub memory per session: hub RSS growth, and the tunnel processes on the
   hub side (condor_ssh_to_job, ssh, proxy helper) per session (target 8 MB
   for the hub). localpool's condor_ssh_to_job and proxy helper are Python
   stand-ins, larger than HTCondor's C++ tools: they are reported apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (
    STANDIN,
    descendants,
    hub_pid,
    pss_kb,
    rss_kb,
    start_pool,
    timings,
)
from tests.harness import Hub


def spawn_all(hub: Hub, users: list[str], batch: int) -> None:
    for i in range(0, len(users), batch):
        group = users[i : i + batch]
        for user in group:
            hub.request_spawn(user, {})
        for user in group:
            hub.wait_ready(user, timeout=300)


def table(rows: list[tuple[str, list[float], str]]) -> None:
    print(f"{'figure':<52} {'median':>9} {'min':>8} {'max':>8}  target")
    for name, values, target in rows:
        print(
            f"{name:<52} {statistics.median(values):>9.3f} {min(values):>8.3f} "
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
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool = start_pool(root, args.sessions, namespaces="auto")
        try:
            # 1. real notebook servers
            real = Hub(root / "hub-real", pool)
            real.start()
            try:
                for n in range(args.real):
                    real.spawn(f"real{n}")
                real_times = timings(real)
            finally:
                real.stop()
            pool.run("condor_rm", "-all")
            # 2. + 3. many sessions with an instant stand-in server
            extra = (
                f"c.CondorSpawner.launcher_args = ['--server', "
                f"{sys.executable + ' ' + str(STANDIN)!r}]\n"
                f"c.CondorSpawner.queue_poll_interval = {args.interval}\n"
                "c.Spawner.poll_interval = 30\n"
            )
            hub = Hub(root / "hub", pool, extra_config=extra)
            hub.start()
            try:
                time.sleep(2)
                base_rss = rss_kb(hub_pid(hub))
                # one at a time: the overhead of a spawn, without the others' contention
                for n in range(args.real):
                    hub.spawn(f"seq{n}")
                standin_times = timings(hub)
                started = time.monotonic()
                spawn_all(hub, [f"u{n}" for n in range(args.sessions - args.real)], batch=10)
                spawn_seconds = time.monotonic() - started
                before = hub.count_calls()
                time.sleep(args.window)
                after = hub.count_calls()
                procs = descendants(hub_pid(hub))
                hub_rss = rss_kb(hub_pid(hub))
                tunnel = [
                    (p, c) for p, c in procs if c not in ("sshd", "node", "setpriv", "nsenter")
                ]
                tunnel_rss = sum(rss_kb(p) for p, _ in tunnel)
                tunnel_pss = sum(pss_kb(p) for p, _ in tunnel)
                ssh_rss = sum(rss_kb(p) for p, c in tunnel if c == "ssh")
            finally:
                hub.stop()
        finally:
            pool.localpool("stop", "--remove-jobs")
    n = args.sessions
    labels = ("submit", "queue wait", "start in the job and tunnel", "total")
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
    print(
        f"hub-side tunnel processes ({len(tunnel)}): RSS {tunnel_rss / 1024 / n:.1f} MB, "
        f"PSS {tunnel_pss / 1024 / n:.1f} MB per session, of which ssh RSS "
        f"{ssh_rss / 1024 / n:.1f} MB (the rest: localpool's Python stand-ins for "
        "condor_ssh_to_job and its -proxy helper)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
