"""Fault injection on localpool, as a site runs the hub: root acting through sudo for N users.

One run: N sessions; their tunnels killed; the hub restarted, then SIGKILLed and
restarted (never more than one tunnel per session meanwhile, none of the killed hub's
left, no job twice); condor_q failing for a while; condor_history failing for a while
(a server stopped meanwhile all the same); one job held and one removed behind the
hub's back; then every server stopped.
It checks what must hold (no server lost that should live, no job or tunnel process
left that should be gone, no work directory lost) and prints how long each recovery
took. ``python -m benchmarks.faults [--sessions 5] [--outage 60] [--json FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import site_hub
from tests.harness import Hub
from tests.sessions import cmdline, nonce, program, server_gone, tunnel_pids


def _until(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` holds (bounded in time)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def _answers(hub: Hub, user: str) -> bool:
    return hub.api("GET", f"/user/{user}/api/status", through_proxy=True, timeout=3)[0] == 200


def _keepers(session_nonce: str) -> int:
    """The session's tunnels now (one keeper each)."""
    return sum("proxy_tunnel.keeper" in cmdline(p) for p in tunnel_pids([session_nonce]))


def _jobs(pool) -> list[str]:
    out = pool.run("condor_q", "-allusers", "-af", "ClusterId", "ProcId").stdout
    return [".".join(line.split()) for line in out.splitlines() if line.strip()]


def _work_file(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir) / "jupyter" / "precious.txt"


def run(sessions: int = 5, outage: float = 60.0) -> dict[str, float]:
    figures: dict[str, float] = {}
    # the pool's cycle as the multi-user tests have it
    with site_hub(sessions, cycle_seconds=0.05) as (hub, pool, users):
        for user in users:
            hub.request_spawn(user, {})
        for user in users:
            hub.wait_ready(user, timeout=120)
            status, _ = hub.api(
                "PUT",
                f"/user/{user}/api/contents/precious.txt",
                {"type": "file", "format": "text", "content": user},
                through_proxy=True,
            )
            assert status in (200, 201), status
        nonces = {user: nonce(user) for user in users}
        jobs = {user: hub.job_of(user) for user in users}

        # 1. every tunnel's ssh killed: each comes back by itself
        killed = time.monotonic()
        for user in users:
            for pid in tunnel_pids([nonces[user]]):
                if program(pid) == "ssh":
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        times = []
        for user in users:
            _until(lambda u=user: _answers(hub, u), 60, f"{user} reconnected")
            times.append(time.monotonic() - killed)
        figures["reconnect after killed tunnels, s (median)"] = statistics.median(times)

        # 2. the hub restarts: every session re-attached
        hub.stop()
        _until(lambda: not tunnel_pids(list(nonces.values())), 20, "old tunnels gone")
        restarted = time.monotonic()
        hub.start()
        most = 0

        def all_back() -> bool:  # one tunnel per session at every look, however many polls
            nonlocal most
            most = max([most, *(_keepers(n) for n in nonces.values())])
            return all(_answers(hub, u) for u in users)

        _until(all_back, 120, "every session re-attached")
        figures["re-attach after a hub restart, s (all sessions)"] = time.monotonic() - restarted

        # 2b. the hub SIGKILLed: its tunnels end with it; a new hub re-attaches every session
        hub.kill()
        gone = _until(lambda: not tunnel_pids(list(nonces.values())), 60, "killed hub's tunnels")
        figures["tunnels of a SIGKILLed hub gone after, s"] = gone
        restarted = time.monotonic()
        hub.start()
        _until(all_back, 120, "every session re-attached after a SIGKILL")
        figures["re-attach after a SIGKILLed hub, s (all sessions)"] = time.monotonic() - restarted
        figures["most tunnels of one session at once while re-attaching"] = most
        assert most == 1, f"a session had {most} tunnels at once"
        assert sorted(_jobs(pool)) == sorted(jobs.values()), "a job lost or started twice"

        # 3. condor_q fails for a while: no server lost
        flag = hub.flag("fail", "condor_q")
        time.sleep(outage)
        lost = [u for u in users if server_gone(hub, u)]
        flag.unlink()
        assert not lost, f"servers lost while condor_q failed: {lost}"
        for user in users:
            _until(lambda u=user: _answers(hub, u), 60, f"{user} after the outage")
        figures[f"servers lost during a {outage:g} s condor_q outage"] = len(lost)

        # 3b. condor_history fails for a while: only what left the queue is in doubt; a
        # running server is stopped all the same (its job held, its files back, removed)
        stopped = users[-1]
        flag = hub.flag("fail", "condor_history")
        t = time.monotonic()
        hub.api("DELETE", f"/users/{stopped}/server")
        _until(lambda: server_gone(hub, stopped), 90, "a stop while condor_history fails")
        figures["stop while condor_history fails, s"] = time.monotonic() - t
        time.sleep(outage)
        lost = [u for u in users if u != stopped and server_gone(hub, u)]
        flag.unlink()
        assert not lost, f"servers lost while condor_history failed: {lost}"
        assert jobs[stopped] not in _jobs(pool), "the stopped server's job is still queued"

        # 4. a hold behind the hub's back: noticed, the job ended safely, the tunnel closed
        held, removed = users[0], users[1]
        assert pool.run("condor_hold", jobs[held], user=held).returncode == 0
        t = time.monotonic()
        _until(lambda: server_gone(hub, held), 60, "the hold noticed")
        figures["notice a hold, s"] = time.monotonic() - t
        _until(lambda: hub.job_of(held) is None, 30, "the held job removed")
        _until(lambda: not tunnel_pids([nonces[held]]), 30, "the held job's tunnel closed")

        # 5. a removal behind the hub's back
        assert pool.run("condor_rm", jobs[removed], user=removed).returncode == 0
        t = time.monotonic()
        _until(lambda: server_gone(hub, removed), 60, "the removal noticed")
        figures["notice a removal, s"] = time.monotonic() - t
        _until(lambda: not tunnel_pids([nonces[removed]]), 30, "the removed job's tunnel closed")

        # 6. the others still live; then every server stops and nothing is left
        rest = [u for u in users[2:] if u != stopped]
        for user in rest:
            assert _answers(hub, user), f"{user} lost"
        for user in rest:
            hub.api("DELETE", f"/users/{user}/server")
        for user in rest:
            _until(lambda u=user: server_gone(hub, u), 90, f"{user} stopped")
        assert pool.run("condor_q", "-allusers", "-json").stdout == "", "jobs left behind"
        assert not tunnel_pids(list(nonces.values())), "tunnel processes left behind"
        for user in users:
            if user != removed:  # a removed job brings nothing back, by HTCondor's design
                assert _work_file(user).read_text() == user, f"{user}'s work directory lost"
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.faults", description=__doc__)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds condor_q fails")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    figures = run(args.sessions, args.outage)
    for name, value in figures.items():
        print(f"{name:<55} {value:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
