"""The ``condor_*`` commands of localpool, with real HTCondor's output and exit codes.

The pool process runs :func:`run` for each request of a ``condor_X`` client
(``localpool.client``), dispatching on the program name. Outputs follow what a real HTCondor 25.0
pool printed (``tests/data/htcondor``): formats, messages, codes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from localpool import ads as adfmt
from localpool.actions import ACTIONS, Usage, job_action
from localpool.ads import Ad
from localpool.jobstate import COMPLETED, HELD, IDLE, REMOVED, RUNNING, duration, schedd_address
from localpool.privs import Account
from localpool.store import PoolNotFound, Store

STATUS_LETTER = {IDLE: "I", RUNNING: "R", REMOVED: "X", COMPLETED: "C", HELD: "H", 6: ">", 7: "S"}


def _stamp(when: float | None) -> str:
    return time.strftime("%m/%d %H:%M", time.localtime(when)) if when else "???"


def _job_filter(args: Sequence[str]) -> tuple[set[str], set[int], set[str]]:
    """Job ids (C.P), clusters (C) and owner names among positional arguments."""
    procs, clusters, owners = set(), set(), set()
    for arg in args:
        if arg.replace(".", "", 1).isdigit() and not arg.startswith("."):
            if "." in arg:
                procs.add(arg)
            else:
                clusters.add(int(arg))
        else:
            owners.add(arg)
    return procs, clusters, owners


def _selected(ad: Ad, procs: set[str], clusters: set[int], owners: set[str]) -> bool:
    if not (procs or clusters or owners):
        return True
    job_id = f"{ad['ClusterId']}.{ad['ProcId']}"
    return job_id in procs or ad["ClusterId"] in clusters or ad.get("Owner") in owners


def _constraint(ads: Iterable[Ad], constraint: str | None) -> list[Ad]:
    if not constraint:
        return list(ads)
    import classad2

    tree = classad2.ExprTree(constraint)  # raises on a bad constraint
    return [
        ad for ad in ads if adfmt.is_true(adfmt.from_classad_value(tree.eval(adfmt.to_classad(ad))))
    ]


def _visible(ad: Ad) -> Ad:
    """The job ad without localpool's own bookkeeping attributes."""
    return {k: v for k, v in ad.items() if not k.startswith("Localpool")}


def _command(ad: Ad) -> str:
    args = ad.get("Arguments", ad.get("Args", ""))
    return f"{Path(ad.get('Cmd', '')).name} {args}".rstrip()


def _runtime(ad: Ad, now: float) -> float:
    total = float(ad.get("RemoteWallClockTime", 0.0))
    if ad["JobStatus"] == RUNNING and ad.get("JobCurrentStartDate"):
        total += now - ad["JobCurrentStartDate"]
    return total


# --- condor_q / condor_history ---------------------------------------------


def _parse_query(argv: Sequence[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "mode": "table",
        "attributes": [],
        "constraint": None,
        "ids": [],
        "allusers": False,
        "limit": None,
        "nobatch": False,
    }
    i = 0
    while i < len(argv):
        arg = argv[i]
        low = arg.lower()
        if low in ("-json",):
            opts["mode"] = "json"
        elif low in ("-l", "-long"):
            opts["mode"] = "long"
        elif low == "-format":
            if i + 2 >= len(argv):
                raise Usage("Error: -format requires a format and an attribute")
            opts["mode"] = "format"
            opts.setdefault("format", []).append((argv[i + 1], argv[i + 2]))
            i += 2
        elif low in ("-af", "-autoformat"):
            # attributes up to the next option, as condor_q reads them
            opts["mode"] = "af"
            opts["af"] = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
                opts["af"].append(argv[i])
        elif low in ("-attributes", "-attrs"):
            i += 1
            opts["attributes"] = [a for a in argv[i].split(",") if a] if i < len(argv) else []
        elif low in ("-constraint", "-const"):
            i += 1
            if i >= len(argv):
                raise Usage(f"Error: {arg} requires another argument")
            opts["constraint"] = argv[i]
        elif low in ("-allusers", "-all"):
            opts["allusers"] = True
        elif low in ("-nobatch", "-nob"):
            opts["nobatch"] = True
        elif low in ("-limit", "-match"):
            i += 1
            if i >= len(argv) or not argv[i].isdigit():
                raise Usage(f"Error: {arg} requires a number")
            opts["limit"] = int(argv[i])
        elif low in ("-name", "-pool"):
            i += 1  # one schedd, one pool: accepted and ignored
        elif low in ("-better-analyze", "-analyze", "-better-analyse", "-analyse"):
            opts["mode"] = "analyze"
        elif low == "-version":
            opts["mode"] = "version"
        elif arg.startswith("-"):
            raise Usage(f"Error: unrecognized option {arg}")
        else:
            opts["ids"].append(arg)
        i += 1
    return opts


def _print_ads(ads: list[Ad], opts: dict[str, Any], out: Callable[[str], None]) -> None:
    mode = opts["mode"]
    if mode == "json":
        out(adfmt.format_json(ads, opts["attributes"]))
    elif mode == "long":
        out(adfmt.format_long(ads, opts["attributes"]))
    elif mode == "af":
        out(adfmt.format_autoformat(ads, opts["af"]))
    elif mode == "format":
        out(adfmt.format_printf(ads, opts["format"]))


def condor_q(argv: Sequence[str], store: Store, caller: Account) -> int:
    opts = _parse_query(argv)
    if opts["mode"] == "version":
        _version()
        return 0
    config = store.config()
    procs, clusters, owners = _job_filter(opts["ids"])
    me = caller.name
    jobs = [
        _visible(ad) for ad in store.read().jobs.values() if _selected(ad, procs, clusters, owners)
    ]
    if not (opts["allusers"] or procs or clusters or owners):
        jobs = [ad for ad in jobs if ad.get("Owner") == me]
    try:
        jobs = _constraint(jobs, opts["constraint"])
    except Exception:
        sys.stderr.write(
            f"\n-- Failed to fetch ads from: {schedd_address(config)} : {config.host}\n\n"
        )
        return 1
    jobs.sort(key=lambda a: (a["ClusterId"], a["ProcId"]))
    if opts["mode"] == "analyze":
        return _analyze(jobs, store)
    if opts["mode"] != "table":
        _print_ads(jobs, opts, sys.stdout.write)
        return 0
    now = time.time()
    sys.stdout.write(
        f"\n\n-- Schedd: {config.host} : <127.0.0.1:9618?... @ "
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
    from localpool.matchmaker import machine_ad, matches, used_resources

    queue = store.read()
    config = store.config()
    used = used_resources([a for a in queue.jobs.values() if "LocalpoolStarterPid" in a])
    machine = machine_ad(config, used)
    sys.stdout.write(f"\n\n-- Schedd: {config.host} : <127.0.0.1:9618?...\n")
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
    opts = _parse_query(argv)
    if opts["mode"] == "version":
        _version()
        return 0
    procs, clusters, owners = _job_filter(opts["ids"])
    jobs = [ad for ad in store.history() if _selected(ad, procs, clusters, owners)]
    try:
        jobs = _constraint(jobs, opts["constraint"])
    except Exception:
        sys.stderr.write(f"Error: could not parse constraint {opts['constraint']}\n")
        return 1
    if opts["limit"] is not None:
        jobs = jobs[: opts["limit"]]
    jobs = [_visible(ad) for ad in jobs]
    if opts["mode"] != "table":
        _print_ads(jobs, opts, sys.stdout.write)
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


# --- condor_status ------------------------------------------------------------


def condor_status(argv: Sequence[str], store: Store) -> int:
    from localpool.matchmaker import machine_ad, used_resources

    opts = _parse_query(argv)
    config = store.config()
    running = [ad for ad in store.read().jobs.values() if "LocalpoolStarterPid" in ad]
    parent = machine_ad(config, used_resources(running))
    parent.update(State="Unclaimed", Activity="Idle", NumDynamicSlots=len(running))
    slots = [parent]
    for ad in sorted(running, key=lambda a: a.get("LocalpoolSlotSlotId", 0)):
        slot = dict(parent)
        slot.update(
            Name=ad.get("RemoteHost"),
            SlotType="Dynamic",
            PartitionableSlot=False,
            State="Claimed",
            Activity="Busy",
            Cpus=ad.get("LocalpoolSlotCpus"),
            Memory=ad.get("LocalpoolSlotMemory"),
            Disk=ad.get("LocalpoolSlotDisk"),
            GPUs=ad.get("LocalpoolSlotGPUs"),
            RemoteOwner=f"{ad['Owner']}@{config.host}",
            JobId=f"{ad['ClusterId']}.{ad['ProcId']}",
        )
        slot.pop("NumDynamicSlots", None)
        slots.append(slot)
    try:
        slots = _constraint(slots, opts["constraint"])
    except Exception:
        sys.stderr.write("Error: invalid constraint\n")
        return 1
    if opts["mode"] != "table":
        _print_ads(slots, opts, sys.stdout.write)
        return 0
    out = [
        "Name                               OpSys      Arch     State     Activity LoadAv "
        "Mem     ActvtyTime",
        "",
    ]
    for s in slots:
        out.append(
            f"{s['Name']:<34} {s['OpSys']:<10} {s['Arch']:<8} {s['State']:<9} "
            f"{s['Activity']:<8} {0:>6.3f} {s['Memory']:>6}  0+00:00:00"
        )
    claimed = len(slots) - 1
    out += [
        "",
        "               Total Owner Claimed Unclaimed Matched Preempting  Drain Backfill BkIdle",
        "",
        f"  X86_64/LINUX {len(slots):>5} {0:>5} {claimed:>7} {1:>9} {0:>7} {0:>10} {0:>6}"
        f" {0:>8} {0:>6}",
        "",
        f"         Total {len(slots):>5} {0:>5} {claimed:>7} {1:>9} {0:>7} {0:>10} {0:>6}"
        f" {0:>8} {0:>6}",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    if config.container_os:
        sys.stdout.write(f"\nContainerOSes offered: {', '.join(config.container_os)}\n")
    return 0


def _version() -> None:
    from localpool.submit import PLATFORM, VERSION

    sys.stdout.write(f"{VERSION}\n{PLATFORM}\n")


# --- dispatch -----------------------------------------------------------------


def run(
    argv: Sequence[str], store: Store, caller: Account, env: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """Run one command for ``caller`` on this pool: (exit code, more for the client).

    Called in the pool process's child for the request, with the caller's
    stdio as ours and the caller's directory as the current one.
    """
    tool = Path(argv[0]).name
    args = list(argv[1:])
    try:
        if not store.exists():
            raise PoolNotFound(store.root)
        if "-version" in args and tool != "condor_q":
            _version()
            return 0, {}
        if tool == "condor_q":
            return condor_q(args, store, caller), {}
        if tool == "condor_history":
            return condor_history(args, store), {}
        if tool in ACTIONS:
            return job_action(tool, args, store, caller), {}
        if tool == "condor_submit":
            from localpool.submit_tool import condor_submit

            return condor_submit(args, store, caller, env)
        if tool == "condor_status":
            return condor_status(args, store), {}
        if tool == "condor_qedit":
            from localpool.qedit import condor_qedit

            return condor_qedit(args, store, caller), {}
    except Usage as err:
        sys.stderr.write(f"{err}\n")
        return 1, {}
    except PoolNotFound as err:
        sys.stderr.write(f"ERROR: {err}\n")
        return 1, {}
    except BrokenPipeError:
        return 1, {}
    sys.stderr.write(f"localpool: {tool} is not a command this pool provides\n")
    return 1, {}
