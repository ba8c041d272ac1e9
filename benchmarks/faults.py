"""Fault injection as a site runs the hub: root acting through sudo for N users, on
localpool or (``--backend htcondor``) the real HTCondor of ``CONDORSPAWNER_HTCONDOR``.

One run: N sessions; their tunnels killed; the hub restarted, then SIGKILLed and
restarted, then restarted while every job's sshd is slow (the attach outlasts its
timeout: the session is kept and comes back); through all of that the hub's pages and
API are hammered for every session while a sampler counts each session's tunnels
(never more than one, none of the killed hub's left, no job twice); condor_q failing
for a while; condor_history failing for a while (a server stopped meanwhile all the
same); one job held and one removed behind the hub's back; then every server stopped.
It checks what must hold (no server lost that should live, no job or tunnel process
left that should be gone, no work directory lost) and prints how long each recovery
took. ``python -m benchmarks.faults [--sessions 5] [--outage 60] [--backend htcondor]
[--json FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import report, site_hub
from proxy_tunnel.procs import parent_of
from tests.harness import Hub
from tests.realpool import HOW_TO_RUN, release_dir
from tests.sessions import answers, nonce, program, server_gone, tunnel_pids, tunnel_tops
from tests.waiting import seconds_until


def _standby(hub: Hub, user: str) -> bool:
    """The user's URL gives the page that says the connection is being re-established."""
    status, body = hub.api("GET", f"/user/{user}/api/status", through_proxy=True, timeout=5)
    return status == 424 and "re-established" in str(body)


def _parent(pid: int) -> str:
    """``pid<-parent (its program)``, for a report of what a look saw."""
    parent = parent_of(pid)
    return f"{pid} (gone)" if parent is None else f"{pid}<-{parent} ({program(parent)})"


def _jobs(pool) -> list[str]:
    out = pool.run("condor_q", "-allusers", "-af", "ClusterId", "ProcId").stdout
    return [".".join(line.split()) for line in out.splitlines() if line.strip()]


def _work_file(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir) / "jupyter" / "precious.txt"


# how long the hub waits for a tunnel to answer (its http_timeout): a slowed sshd makes
# every attach take longer than that
ATTACH_TIMEOUT = 60


class Hammer:
    """While it runs: threads asking the hub about every session as fast as it answers
    (the pending page, the hub's own user URL and the REST API, each of which a browser
    or a script may call at any time), and a sampler of the most tunnels one session
    had at once. JupyterHub 6.1 polls the spawner from the pending page when a server
    turns ready while the page renders; the polls that overlap in every run are the
    start-up check's and the periodic ones. Bounded: it stops when told or after
    ``limit`` seconds."""

    PATHS = ("/hub/spawn-pending/{user}", "/hub/user/{user}/api/status", "/hub/api/users/{user}")

    def __init__(self, hub: Hub, nonces: dict[str, str], threads: int = 3, limit: float = 900):
        self.hub, self.nonces, self.limit = hub, nonces, limit
        self.most = 0  # tunnels of one session at once, the most seen
        self.crowded: list[str] = []  # what the looks that saw more than one tunnel saw
        self.requests = 0
        self._count = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample, daemon=True)] + [
            threading.Thread(target=self._ask, args=(i,), daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _running(self, deadline: float) -> bool:
        return not self._stop.is_set() and time.monotonic() < deadline

    def _ask(self, first: int) -> None:
        users, deadline, i = list(self.nonces), time.monotonic() + self.limit, first
        while self._running(deadline):
            path = self.PATHS[i % len(self.PATHS)].format(user=users[i % len(users)])
            i += 1
            try:
                self.hub.api("GET", path, through_proxy=True, timeout=10)
            except OSError:  # the hub is down meanwhile
                self._stop.wait(0.2)
                continue
            with self._count:
                self.requests += 1

    def _sample(self) -> None:
        deadline = time.monotonic() + self.limit
        while self._running(deadline):
            for user, session_nonce in self.nonces.items():
                tops = tunnel_tops(session_nonce)
                self.most = max(self.most, len(tops))
                if len(tops) > 1 and len(self.crowded) < 5:
                    self.crowded.append(f"{user}: {', '.join(map(_parent, tops))}")
            self._stop.wait(0.05)


def run(sessions: int = 5, outage: float = 60.0, backend: str = "localpool") -> dict[str, float]:
    figures: dict[str, float] = {}
    # the pool's cycle as the multi-user tests have it
    hub_config = f"c.CondorSpawner.http_timeout = {ATTACH_TIMEOUT}\n"
    with site_hub(sessions, cycle_seconds=0.05, backend=backend, extra_config=hub_config) as (
        hub,
        pool,
        users,
    ):
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

        with Hammer(hub, nonces) as hammer:
            # 1. every tunnel's ssh killed: each comes back by itself
            killed = time.monotonic()
            for user in users:
                for pid in tunnel_pids([nonces[user]]):
                    if program(pid) == "ssh":
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
            times = []
            for user in users:
                seconds_until(lambda u=user: answers(hub, u), 60, f"{user} reconnected")
                times.append(time.monotonic() - killed)
            figures["reconnect after killed tunnels, s (median)"] = statistics.median(times)

            # 2. the hub restarts: every session re-attached
            hub.stop()
            seconds_until(lambda: not tunnel_pids(list(nonces.values())), 20, "old tunnels gone")
            restarted = time.monotonic()
            hub.start()

            def all_back() -> bool:
                return all(answers(hub, u) for u in users)

            seconds_until(all_back, 120, "every session re-attached")
            figures["re-attach after a hub restart, s (all sessions)"] = (
                time.monotonic() - restarted
            )

            # 2b. the hub SIGKILLed: its tunnels end with it; a new hub re-attaches every session
            hub.kill()
            gone = seconds_until(
                lambda: not tunnel_pids(list(nonces.values())), 60, "killed hub's tunnels"
            )
            figures["tunnels of a SIGKILLed hub gone after, s"] = gone
            restarted = time.monotonic()
            hub.start()
            seconds_until(all_back, 120, "every session re-attached after a SIGKILL")
            figures["re-attach after a SIGKILLed hub, s (all sessions)"] = (
                time.monotonic() - restarted
            )
            assert sorted(_jobs(pool)) == sorted(jobs.values()), "a job lost or started twice"

            # 2c. every job's sshd slow across a hub restart: each attach outlasts its timeout,
            # so the hub keeps the job and its port gives the standby page; then back
            late = hub.flag("late", "condor_ssh_to_job", str(ATTACH_TIMEOUT * 3))
            hub.stop()
            seconds_until(lambda: not tunnel_pids(list(nonces.values())), 20, "old tunnels gone")
            hub.start()
            time.sleep(ATTACH_TIMEOUT + 10)  # the first attach of every session timed out
            lost = [u for u in users if server_gone(hub, u)]
            waiting = [u for u in users if _standby(hub, u)]
            late.unlink()
            assert not lost, f"servers lost while the sshd was slow: {lost}"
            assert waiting == users, (
                f"without the standby page: {sorted(set(users) - set(waiting))}"
            )
            t = time.monotonic()
            seconds_until(all_back, 120, "every session back after the sshd is quick again")
            figures["answers again after a slowed sshd, s (all sessions)"] = time.monotonic() - t
            assert sorted(_jobs(pool)) == sorted(jobs.values()), "a job lost or started twice"
        figures["requests hammered at the hub meanwhile"] = hammer.requests
        figures["most tunnels of one session at once"] = hammer.most
        assert hammer.most == 1, f"a session had {hammer.most} tunnels at once: {hammer.crowded}"

        # 3. condor_q fails for a while: no server lost
        flag = hub.flag("fail", "condor_q")
        time.sleep(outage)
        lost = [u for u in users if server_gone(hub, u)]
        flag.unlink()
        assert not lost, f"servers lost while condor_q failed: {lost}"
        for user in users:
            seconds_until(lambda u=user: answers(hub, u), 60, f"{user} after the outage")
        figures[f"servers lost during a {outage:g} s condor_q outage"] = len(lost)

        # 3b. condor_history fails for a while: only what left the queue is in doubt; a
        # running server is stopped all the same (its job held, its files back, removed)
        stopped = users[-1]
        flag = hub.flag("fail", "condor_history")
        t = time.monotonic()
        hub.api("DELETE", f"/users/{stopped}/server")
        seconds_until(lambda: server_gone(hub, stopped), 90, "a stop while condor_history fails")
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
        seconds_until(lambda: server_gone(hub, held), 60, "the hold noticed")
        figures["notice a hold, s"] = time.monotonic() - t
        seconds_until(lambda: hub.job_of(held) is None, 30, "the held job removed")
        seconds_until(lambda: not tunnel_pids([nonces[held]]), 30, "the held job's tunnel closed")

        # 5. a removal behind the hub's back
        assert pool.run("condor_rm", jobs[removed], user=removed).returncode == 0
        t = time.monotonic()
        seconds_until(lambda: server_gone(hub, removed), 60, "the removal noticed")
        figures["notice a removal, s"] = time.monotonic() - t
        seconds_until(
            lambda: not tunnel_pids([nonces[removed]]), 30, "the removed job's tunnel closed"
        )

        # 6. the others still live; then every server stops and nothing is left
        rest = [u for u in users[2:] if u != stopped]
        for user in rest:
            assert answers(hub, user), f"{user} lost"
        for user in rest:
            hub.api("DELETE", f"/users/{user}/server")
        for user in rest:
            seconds_until(lambda u=user: server_gone(hub, u), 90, f"{user} stopped")
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
    parser.add_argument("--backend", choices=("localpool", "htcondor"), default="localpool")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.backend == "htcondor" and release_dir() is None:
        parser.error(f"--backend htcondor: {HOW_TO_RUN}")
    figures = run(args.sessions, args.outage, args.backend)
    report(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
