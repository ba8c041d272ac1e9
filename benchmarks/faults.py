"""Fault injection on localpool, as a site runs the hub: root acting through sudo for N users.

One run: N sessions; their tunnels killed; the hub restarted; condor_q failing for a
while; one job held and one removed behind the hub's back; then every server stopped.
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
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from proxy_tunnel.procs import alive, command_line, processes_carrying
from tests.harness import Hub, SystemPool, UnixUsers


@contextlib.contextmanager
def site_hub(sessions: int) -> Iterator[tuple[Hub, SystemPool, list[str]]]:
    """A system pool, ``sessions`` real accounts and a hub acting for them through sudo."""
    from hub_config.demo import site_toml

    base = Path(tempfile.mkdtemp(prefix="condorspawner-faults-"))
    base.chmod(0o755)
    (base / "homes").mkdir(mode=0o755)
    users = UnixUsers(base / "homes")
    pool = SystemPool(base)
    hub = None
    try:
        pool.start()
        names = [users(chr(ord("a") + i)) for i in range(sessions)]
        (base / "hub").mkdir(mode=0o755)
        hub = Hub(
            base / "hub",
            pool,
            site=site_toml(None, start_timeout="30s", run_as_users=str(base / "hub" / "shim")),
            extra_config='c.CondorSpawner.submit_root = "{home}/.condorspawner"\n',
        )
        hub.start()
        yield hub, pool, names
    finally:
        if hub is not None:
            hub.stop()
        pool.stop()
        users.remove_all()
        shutil.rmtree(base, ignore_errors=True)


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


def _stopped(hub: Hub, user: str) -> bool:
    return "" not in hub.api("GET", f"/users/{user}")[1]["servers"]


def _nonce(user: str) -> str:
    secret = Path(pwd.getpwnam(user).pw_dir) / ".condorspawner/default/condorspawner.secret"
    return json.loads(secret.read_text())["rendezvous"]["nonce"]


def _tunnel(nonce: str) -> list[int]:
    return [p for p in processes_carrying(f":/tmp/condorspawner-{nonce}/nb.sock") if alive(p)]


def _work_file(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir) / "jupyter" / "precious.txt"


def run(sessions: int = 5, outage: float = 60.0) -> dict[str, float]:
    figures: dict[str, float] = {}
    with site_hub(sessions) as (hub, pool, users):
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
        nonces = {user: _nonce(user) for user in users}
        jobs = {user: hub.job_of(user) for user in users}

        # 1. every tunnel's ssh killed: each comes back by itself
        killed = time.monotonic()
        for user in users:
            for pid in _tunnel(nonces[user]):
                if Path((command_line(pid) or [""])[0]).name == "ssh":
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        times = []
        for user in users:
            _until(lambda u=user: _answers(hub, u), 60, f"{user} reconnected")
            times.append(time.monotonic() - killed)
        figures["reconnect after killed tunnels, s (median)"] = statistics.median(times)

        # 2. the hub restarts: every session re-attached
        hub.stop()
        _until(lambda: not any(_tunnel(n) for n in nonces.values()), 20, "old tunnels gone")
        restarted = time.monotonic()
        hub.start()
        for user in users:
            _until(lambda u=user: _answers(hub, u), 120, f"{user} re-attached")
        figures["re-attach after a hub restart, s (all sessions)"] = time.monotonic() - restarted

        # 3. condor_q fails for a while: no server lost
        flag = hub.flag("fail", "condor_q")
        time.sleep(outage)
        lost = [u for u in users if _stopped(hub, u)]
        flag.unlink()
        assert not lost, f"servers lost while condor_q failed: {lost}"
        for user in users:
            _until(lambda u=user: _answers(hub, u), 60, f"{user} after the outage")
        figures[f"servers lost during a {outage:g} s condor_q outage"] = len(lost)

        # 4. a hold behind the hub's back: noticed, the job ended safely, the tunnel closed
        held, removed = users[0], users[1]
        assert pool.run("condor_hold", jobs[held], user=held).returncode == 0
        t = time.monotonic()
        _until(lambda: _stopped(hub, held), 60, "the hold noticed")
        figures["notice a hold, s"] = time.monotonic() - t
        _until(lambda: hub.job_of(held) is None, 30, "the held job removed")
        _until(lambda: not _tunnel(nonces[held]), 30, "the held job's tunnel closed")

        # 5. a removal behind the hub's back
        assert pool.run("condor_rm", jobs[removed], user=removed).returncode == 0
        t = time.monotonic()
        _until(lambda: _stopped(hub, removed), 60, "the removal noticed")
        figures["notice a removal, s"] = time.monotonic() - t
        _until(lambda: not _tunnel(nonces[removed]), 30, "the removed job's tunnel closed")

        # 6. the others still live; then every server stops and nothing is left
        for user in users[2:]:
            assert _answers(hub, user), f"{user} lost"
        for user in users[2:]:
            hub.api("DELETE", f"/users/{user}/server")
        for user in users[2:]:
            _until(lambda u=user: _stopped(hub, u), 90, f"{user} stopped")
        assert pool.run("condor_q", "-allusers", "-json").stdout == "", "jobs left behind"
        assert not any(_tunnel(n) for n in nonces.values()), "tunnel processes left behind"
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
