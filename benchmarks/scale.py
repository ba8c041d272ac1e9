"""Scale: N sessions of real Unix accounts on one hub, as a site runs it (issue 27).

JupyterHub as root acts for N accounts through sudo (benchmarks/common.py); each job
runs the instant stand-in server, so the figures are the hub's and the tunnels', not
JupyterLab's start. In order:

1. the storm: all N spawn requests at once; seconds until the last is ready, the
   spawns that failed, ``condor_submit`` calls;
2. idle, all N running: hub RSS per session, the hub-side tunnel processes' RSS and
   USS per session (``smaps_rollup``; what is beyond ``condor_ssh_to_job`` and ``ssh``
   themselves apart), the hub's CPU seconds per minute, ``condor_q`` calls per
   watcher interval;
3. the hub restarted: seconds until every session answers through the proxy again,
   and the most tunnels connecting at once (``condor_ssh_to_job`` without its ``ssh``
   yet: asking the schedd and the starter);
4. the hub SIGKILLed, then started: the same.

``python -m benchmarks.scale [--sessions 25] [--backend htcondor] [--json FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import (
    STANDIN,
    hub_pid,
    report,
    rss_kb,
    site_hub,
    tunnel_processes,
    uss_kb,
)
from tests.harness import Hub
from tests.realpool import HOW_TO_RUN, release_dir
from tests.sessions import answers, nonce, tunnel_pids
from tests.waiting import seconds_until

INTERVAL = 5.0  # the watcher's condor_q interval here
TOOLS_THEMSELVES = ("condor_ssh_to_j", "ssh")  # /proc's comm: 15 characters at most


def _config(sessions: int) -> str:
    return (
        f"c.CondorSpawner.queue_poll_interval = {INTERVAL}\n"
        f"c.JupyterHub.concurrent_spawn_limit = {max(100, sessions)}\n"
        "c.Spawner.start_timeout = 600\n"
        f"c.CondorSpawner.launcher_args = ['--server', {f'{sys.executable} {STANDIN}'!r}]\n"
    )


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ConnectingCount:
    """Samples, while it runs, how many tunnels are connecting at once: a hub-side
    ``condor_ssh_to_job`` (not a ``-proxy``) that has no ``ssh`` below it yet."""

    def __init__(self) -> None:
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ConnectingCount:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.most = max(self.most, _connecting())


def _tunnels_cpu(tunnels: list[tuple[int, str]]) -> float:
    """CPU seconds so far of these processes (those that ended meanwhile count as 0)."""
    total = 0.0
    for pid, _ in tunnels:
        with contextlib.suppress(OSError):
            total += _cpu_seconds(pid)
    return total


def _connecting() -> int:
    tools, parents_of_ssh = set(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        if comm == "ssh":
            parents_of_ssh.add(int(rest.split()[1]))
        # the tool itself, or a script run by its interpreter (localpool's: python3 -I TOOL)
        tool = any(a.endswith(b"/condor_ssh_to_job") or a == b"condor_ssh_to_job" for a in argv[:3])
        if tool and b"-proxy" not in argv:
            tools.add(int(entry.name))
    return len(tools - parents_of_ssh)


def _all_answer(hub: Hub, users: list[str]) -> bool:
    return all(answers(hub, user) for user in users)


def storm(hub: Hub, users: list[str]) -> tuple[dict[str, float], list[str]]:
    """Every spawn requested at once; the last one's ready time and what went wrong, and
    the users whose server is ready (the later figures are theirs)."""
    started = time.monotonic()
    for user in users:
        hub.request_spawn(user, {})
    failed: set[str] = set()

    def settled() -> bool:
        ready = 0
        for user in users:
            server = hub.api("GET", f"/users/{user}")[1]["servers"].get("")
            if server and server["ready"]:
                ready += 1
            elif not server or not server.get("pending"):
                failed.add(user)
        return ready + len(failed) == len(users)

    seconds_until(settled, 600, lambda: f"every spawn settles\n{hub.log_tail()}", 0.5)
    figures = {
        "storm: last ready, s": time.monotonic() - started,
        "storm: failed spawns": len(failed),
        "storm: condor_submit calls": hub.count_calls(("condor_submit",))["condor_submit"],
    }
    return figures, [user for user in users if user not in failed]


def idle(hub: Hub, sessions: int, window: float, idle_rss_kb: int) -> dict[str, float]:
    """What N running sessions cost the hub while nothing happens."""
    time.sleep(INTERVAL)  # the spawns' fast interval is over
    pid, before_calls = hub_pid(hub), hub.count_calls()
    tunnels = tunnel_processes(hub)
    cpu, tunnels_cpu = _cpu_seconds(pid), _tunnels_cpu(tunnels)
    time.sleep(window)
    cpu = _cpu_seconds(pid) - cpu
    tunnels_cpu = _tunnels_cpu(tunnels) - tunnels_cpu
    calls = hub.count_calls()["condor_q"] - before_calls["condor_q"]
    uss = {p: uss_kb(p) for p, _ in tunnels}
    beyond = sum(uss[p] for p, comm in tunnels if comm not in TOOLS_THEMSELVES)
    each: dict[str, float] = {}  # what is beyond the tools, by program (the keeper: python)
    for p, comm in tunnels:
        if comm not in TOOLS_THEMSELVES:
            key = f"    {comm}, MB"
            each[key] = each.get(key, 0.0) + uss[p] / 1024 / sessions
    return {
        "hub RSS per session, MB": (rss_kb(pid) - idle_rss_kb) / 1024 / sessions,
        "tunnel processes RSS per session, MB": sum(rss_kb(p) for p, _ in tunnels)
        / 1024
        / sessions,
        "tunnel processes USS per session, MB": sum(uss.values()) / 1024 / sessions,
        "  of it beyond condor_ssh_to_job and ssh, MB": beyond / 1024 / sessions,
        **each,
        "hub CPU idle, % of one core": cpu / window * 100,
        "tunnel processes CPU idle, % of one core": tunnels_cpu / window * 100,
        "condor_q per interval": calls / (window / INTERVAL),
    }


def run(sessions: int = 25, window: float = 60.0, backend: str = "localpool") -> dict[str, float]:
    figures: dict[str, float] = {"sessions": sessions}
    with site_hub(
        sessions, extra_config=_config(sessions), backend=backend, start_timeout="10m"
    ) as (hub, _, users):
        time.sleep(2)
        idle_rss = rss_kb(hub_pid(hub))
        spawned, users = storm(hub, users)
        figures |= spawned
        figures |= idle(hub, len(users), window, idle_rss)
        nonces = [nonce(user) for user in users]
        for how in ("restart", "SIGKILL"):
            if how == "restart":
                hub.stop()
            else:
                hub.kill()
            seconds_until(lambda: not tunnel_pids(nonces), 120, "the old hub's tunnels end")
            with ConnectingCount() as connecting:
                started = time.monotonic()
                hub.start(timeout=300)
                seconds_until(lambda: _all_answer(hub, users), 600, f"all back after a {how}")
                figures[f"{how}: all answering again, s"] = time.monotonic() - started
            figures[f"{how}: most tunnels connecting at once"] = connecting.most
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.scale", description=__doc__)
    parser.add_argument("--sessions", type=int, default=25)
    parser.add_argument("--window", type=float, default=60.0, help="idle seconds measured")
    parser.add_argument("--backend", choices=("localpool", "htcondor"), default="localpool")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the hub runs as a site runs it: as root, for real accounts")
    if args.backend == "htcondor" and release_dir() is None:
        parser.error(HOW_TO_RUN)
    report(run(args.sessions, args.window, args.backend), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
