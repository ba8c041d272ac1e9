"""Issue 14: one hub, two schedds (access points), as a site runs it (root through sudo).

New notebooks and batch jobs go to the least loaded schedd; a job stays with its
schedd; a schedd that stops answering makes only its own sessions "unknown" (kept,
never stopped), the other schedd's sessions carry on and new spawns go there; a hub
restart re-attaches the sessions of both once the stopped one answers again.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from tests.sessions import run_in_terminal, time_to_answer
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real accounts and sudo need root")

HOST = socket.gethostname().split(".")[0] or "localhost"
S1, S2 = f"schedd1@{HOST}", f"schedd2@{HOST}"
NOTEBOOKS = 10  # the figure; each notebook submits two batch jobs
# room for every notebook (10GB of disk each by default) and batch job at once
ROOM = ("--cpus", "40", "--memory", "64GB", "--disk", "1000GB")
TWO = {"network": "isolated", "schedds": 2, "start_options": ROOM}


def with_two_schedds(hub) -> None:
    """The site lists both schedds (the demo's site names none) and asks for little disk
    (32 jobs fit on one real execute point's disk); the hub restarted."""
    config = hub.root / "site.toml"
    text = config.read_text().replace("[pool]\n", f'[pool]\nschedds = ["{S1}", "{S2}"]\n', 1)
    config.write_text(text + '\n[limits.disk]\ndefault = "1GB"\n')
    hub.stop()
    hub.start()


def jobs_on(pool, schedd: str) -> list[dict]:
    """Every job of the schedd: id, owner, and whose notebook it is (if one)."""
    out = pool.run(
        "condor_q",
        "-name",
        schedd,
        "-allusers",
        "-af",
        "ClusterId",
        "ProcId",
        "Owner",
        "CondorSpawnerUser",
        "JobStatus",
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    return [
        {"id": f"{c}.{p}", "owner": o, "notebook": n != "undefined", "status": int(s)}
        for c, p, o, n, s in rows
    ]


def split(pool, users: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per schedd: whose notebooks and whose batch jobs it holds."""
    found = {}
    for schedd in (S1, S2):
        jobs = [j for j in jobs_on(pool, schedd) if j["owner"] in users]
        found[schedd] = {
            "notebooks": sorted(j["owner"] for j in jobs if j["notebook"]),
            "batch": sorted(j["owner"] for j in jobs if not j["notebook"]),
        }
    return found


def collector_caught_up(pool) -> bool:
    """The collector's schedd ads count every job the two queues hold (the load measure)."""
    out = pool.run("condor_status", "-schedd", "-af", "TotalRunningJobs", "TotalIdleJobs")
    counted = sum(int(n) for line in out.stdout.splitlines() for n in line.split())
    queued = sum(1 for s in (S1, S2) for j in jobs_on(pool, s) if j["status"] in (1, 2))
    return out.returncode == 0 and counted == queued


def notebook_job(pool, schedd: str, user: str) -> str | None:
    for job in jobs_on(pool, schedd):
        if job["owner"] == user and job["notebook"]:
            return job["id"]
    return None


def answers(hub, user: str) -> bool:
    try:
        return hub.api("GET", f"/user/{user}/api/status", through_proxy=True, timeout=5)[0] == 200
    except OSError:
        return False


def still_kept(hub, user: str) -> bool:
    """The hub still has the user's server (running or not answering, but not stopped)."""
    _, model = hub.api("GET", f"/users/{user}")
    server = model["servers"].get("")
    return bool(server and server["ready"] and not server.get("stopped"))


@pytest.mark.slow
@pytest.mark.parametrize("system_pool", [TWO], indirect=True)
def test_two_schedds_spread_by_load_one_stops_a_restart_reattaches(
    sudo_hub, system_pool, unix_users
):
    hub, pool = sudo_hub, system_pool
    with_two_schedds(hub)
    users = [unix_users(f"{i}") for i in range(NOTEBOOKS)]
    started = time.monotonic()
    for group in (users[: NOTEBOOKS // 2], users[NOTEBOOKS // 2 :]):
        for user in group:
            hub.request_spawn(user, {})
        for user in group:
            hub.wait_ready(user, timeout=180)
    spawned = time.monotonic() - started
    notebooks = split(pool, users)
    counts = {s: len(notebooks[s]["notebooks"]) for s in (S1, S2)}
    print(f"\n{NOTEBOOKS} notebooks in {spawned:.0f} s: {counts}", flush=True)
    assert sum(counts.values()) == NOTEBOOKS
    assert abs(counts[S1] - counts[S2]) <= 1, notebooks
    # two batch jobs from each notebook's terminal (condorsub picks the schedd too, by
    # the collector's ads, which a real schedd refreshes a moment after each submission)
    for user in users + users:
        screen = asyncio.run(
            run_in_terminal(
                hub,
                user,
                "condorsub submit /bin/sleep 900; echo DONE-$?",
                until=r"DONE-\d+",
                timeout=120,
            )
        )
        assert "DONE-0" in screen, screen
        wait_until(lambda: collector_caught_up(pool), 30, "the schedds' ads count every job")
    spread = split(pool, users)
    batch = {s: len(spread[s]["batch"]) for s in (S1, S2)}
    load = {s: counts[s] + batch[s] for s in (S1, S2)}
    print(f"{2 * NOTEBOOKS} batch jobs: {batch}; jobs per schedd: {load}")
    assert sum(batch.values()) == 2 * NOTEBOOKS
    assert abs(load[S1] - load[S2]) <= 1, spread
    on = {s: spread[s]["notebooks"] for s in (S1, S2)}
    jobs = {u: (s, notebook_job(pool, s, u)) for s in (S1, S2) for u in on[s]}

    # schedd1 stops answering: its sessions are unknown, kept; schedd2's carry on
    assert pool.schedd_off(S1)
    wait_until(
        lambda: f"condor_q -name {S1} failed (job states unknown" in hub.log_tail(400),
        30,
        "the hub saw schedd1 not answering (and said which)",
    )
    time.sleep(8)  # several polls of every server (Spawner.poll_interval = 2 s)
    for user in on[S1]:
        assert still_kept(hub, user), f"{user}'s server was stopped\n{hub.log_tail(60)}"
    for user in on[S2]:
        assert still_kept(hub, user)
        time_to_answer(hub, user, timeout=20)
    late = [unix_users("late1"), unix_users("late2")]
    for user in late:
        hub.spawn(user, {}, timeout=120)
        assert notebook_job(pool, S2, user), f"{user}'s notebook not on the live schedd"
    print(f"with {S1} off, new notebooks went to {S2}: {late}")
    for user in on[S1]:
        assert still_kept(hub, user)

    assert f"condor_q -name {S2} failed" not in hub.log_tail(2000)
    # schedd1 answers again; the hub restarts and re-attaches the sessions of both
    assert pool.schedd_on(S1)
    hub.stop()
    hub.start()
    for user in on[S1] + on[S2] + late:
        time_to_answer(hub, user, timeout=60)
        assert still_kept(hub, user)
    for user, (schedd, job) in jobs.items():
        assert notebook_job(pool, schedd, user) == job, (user, schedd, job)
    assert {j["status"] for s in (S1, S2) for j in jobs_on(pool, s) if j["notebook"]} == {2}
