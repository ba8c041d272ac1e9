"""``condor_q`` and ``condor_history``, with the tables, messages and codes of HTCondor 25.0.

Outputs follow what a real pool printed (``tests/data/htcondor``): the
batch and ``-nobatch`` tables, the totals, ``-better-analyze``, and the
failures of a constraint that does not parse.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from localpool.ads import Ad
from localpool.schedd.jobstate import COMPLETED, HELD, IDLE, REMOVED, RUNNING, duration
from localpool.schedd.schedds import address, name_of
from localpool.schedd.store import Store
from localpool.security.privs import Account
from localpool.tools.query import (
    constrained,
    job_filter,
    parse_options,
    print_ads,
    print_version,
    selected,
    visible,
)

STATUS_LETTER = {IDLE: "I", RUNNING: "R", REMOVED: "X", COMPLETED: "C", HELD: "H", 6: ">", 7: "S"}


def _stamp(when: float | None) -> str:
    return time.strftime("%m/%d %H:%M", time.localtime(when)) if when else "???"


def _command(ad: Ad) -> str:
    args = ad.get("Arguments", ad.get("Args", ""))
    return f"{Path(ad.get('Cmd', '')).name} {args}".rstrip()


def _runtime(ad: Ad, now: float) -> float:
    total = float(ad.get("RemoteWallClockTime", 0.0))
    if ad["JobStatus"] == RUNNING and ad.get("JobCurrentStartDate"):
        total += now - ad["JobCurrentStartDate"]
    return total


def condor_q(argv: Sequence[str], store: Store, caller: Account) -> int:
    opts = parse_options(argv)
    if opts["mode"] == "version":
        print_version()
        return 0
    config = store.config()
    procs, clusters, owners = job_filter(opts["ids"])
    me = caller.name
    now = int(time.time())  # the schedd's clock, added to every ad it sends (ServerTime)
    jobs = [
        {**visible(ad), "ServerTime": now}
        for ad in store.read().jobs.values()
        if selected(ad, procs, clusters, owners)
    ]
    if not (opts["allusers"] or procs or clusters or owners):
        jobs = [ad for ad in jobs if ad.get("Owner") == me]
    try:
        jobs = constrained(jobs, opts["constraint"])
    except Exception:
        sys.stderr.write(
            f"\n-- Failed to fetch ads from: {address(config, store.schedd)} : "
            f"{name_of(store, config)}\n\n"
        )
        return 1
    jobs.sort(key=lambda a: (a["ClusterId"], a["ProcId"]))
    if opts["mode"] == "analyze":
        return _analyze(jobs, store)
    if opts["mode"] != "table":
        print_ads(jobs, opts, sys.stdout.write)
        return 0
    now = time.time()
    sys.stdout.write(
        f"\n\n-- Schedd: {name_of(store, config)} : <127.0.0.1:9618?... @ "
        f"{time.strftime('%m/%d/%y %H:%M:%S')}\n"
    )
    if opts["nobatch"]:
        sys.stdout.write(" ID      OWNER            SUBMITTED     RUN_TIME ST PRI SIZE CMD\n")
        for ad in jobs:
            job_id = f"{ad['ClusterId']}.{ad['ProcId']}"
            size = ad.get("ImageSize", 0) / 1024
            sys.stdout.write(
                f"{job_id:>6}   {ad['Owner']:<14} {_stamp(ad.get('QDate'))} "
                f"{duration(_runtime(ad, now)):>12} {STATUS_LETTER.get(ad['JobStatus'], '?')}"
                f"  {ad.get('JobPrio', 0):<3} {size:>4.1f} {_command(ad)}\n"
            )
    else:
        _batch_table(jobs, sys.stdout.write)
    counts = {s: sum(1 for ad in jobs if ad["JobStatus"] == s) for s in STATUS_LETTER}

    def totals(who: str, trailing: str) -> str:
        return (
            f"Total for {who}: {len(jobs)} jobs; {counts[COMPLETED]} completed, "
            f"{counts[REMOVED]} removed, {counts[IDLE]} idle, {counts[RUNNING]} running, "
            f"{counts[HELD]} held, {counts[7]} suspended{trailing}\n"
        )

    sys.stdout.write("\n" + totals("query", " ") + totals(me, " ") + totals("all users", "") + "\n")
    return 0


def _batch_table(jobs: list[Ad], out: Callable[[str], None]) -> None:
    any_held = any(ad["JobStatus"] == HELD for ad in jobs) or not jobs
    if any_held:
        out("OWNER BATCH_NAME      SUBMITTED   DONE   RUN    IDLE   HOLD  TOTAL JOB_IDS\n")
    else:
        out("OWNER BATCH_NAME    SUBMITTED   DONE   RUN    IDLE  TOTAL JOB_IDS\n")
    batches: dict[tuple[str, str], list[Ad]] = {}
    for ad in jobs:
        name = ad.get("JobBatchName") or f"ID: {ad['ClusterId']}"
        batches.setdefault((ad["Owner"], name), []).append(ad)
    for (owner, name), members in batches.items():

        def n(status: int, members: list[Ad] = members) -> str:
            count = sum(1 for ad in members if ad["JobStatus"] == status)
            return str(count) if count else "_"

        ids = [f"{ad['ClusterId']}.{ad['ProcId']}" for ad in members]
        shown = ids[0] if len(ids) == 1 else f"{ids[0]}-{members[-1]['ProcId']}"
        cols = [n(COMPLETED), n(RUNNING), n(IDLE)] + ([n(HELD)] if any_held else [])
        out(
            f"{owner:<5} {name:<11} {_stamp(members[0].get('QDate'))} "
            + " ".join(f"{c:>6}" for c in [*cols, str(len(members))])
            + f" {shown}\n"
        )


def _analyze(jobs: list[Ad], store: Store) -> int:
    """A short ``-better-analyze``: which of the job's conditions the slot fails."""
    from localpool.negotiator.matchmaker import machine_ad, matches, used_resources

    queue = store.read()
    config = store.config()
    used = used_resources([a for a in queue.jobs.values() if "LocalpoolStarterPid" in a])
    machine = machine_ad(config, used)
    sys.stdout.write(f"\n\n-- Schedd: {name_of(store, config)} : <127.0.0.1:9618?...\n")
    for ad in jobs:
        job = f"{ad['ClusterId']}.{ad['ProcId']:03d}"
        sys.stdout.write(
            f"The Requirements expression for job {job} is\n\n    {ad.get('Requirements')}\n\n"
        )
        ok = matches(ad, machine)
        rejected = 0 if ok else 1
        sys.stdout.write(
            f"\n{ad['ClusterId']:03d}.{ad['ProcId']:03d}:  Run analysis summary ignoring user "
            f"priority.  Of 1 slots on 1 machines,\n"
            f"      {rejected} slots are rejected by your job's requirements\n"
            f"      0 slots reject your job because of their own requirements\n"
            f"      {1 - rejected} slots match and are willing to run your job\n"
        )
        if ad.get("LastRejMatchReason"):
            sys.stdout.write(f"\nReason for last match failure: {ad['LastRejMatchReason']}\n")
    return 0


def condor_history(argv: Sequence[str], store: Store) -> int:
    opts = parse_options(argv)
    if opts["mode"] == "version":
        print_version()
        return 0
    procs, clusters, owners = job_filter(opts["ids"])
    jobs = [ad for ad in store.history() if selected(ad, procs, clusters, owners)]
    try:
        jobs = constrained(jobs, opts["constraint"])
    except Exception:
        sys.stderr.write(f"Error: could not parse constraint {opts['constraint']}\n")
        return 1
    if opts["limit"] is not None:
        jobs = jobs[: opts["limit"]]
    jobs = [visible(ad) for ad in jobs]
    if opts["mode"] != "table":
        print_ads(jobs, opts, sys.stdout.write)
        return 0
    sys.stdout.write(" ID          OWNER            SUBMITTED   RUN_TIME   ST   COMPLETED CMD\n")
    for ad in jobs:
        job_id = f"{ad['ClusterId']}.{ad['ProcId']}"
        sys.stdout.write(
            f"{job_id:<12} {ad['Owner']:<14} {_stamp(ad.get('QDate'))} "
            f"{duration(ad.get('RemoteWallClockTime', 0)):>12} "
            f"{STATUS_LETTER.get(ad['JobStatus'], '?')}  {_stamp(ad.get('CompletionDate'))} "
            f"{_command(ad)}\n"
        )
    return 0
