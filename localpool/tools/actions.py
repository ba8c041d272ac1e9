"""``condor_rm``, ``condor_hold``, ``condor_release``, ``condor_vacate_job``.

Messages and exit codes follow HTCondor's tool (``src/condor_tools/tool.cpp``)
and the recordings: a job id answers per job (``Job 8.0 held``, ``Permission
denied to hold job 8.0``, ``Job 8.0 not found``); a cluster, a user or
``-all`` is a constraint the schedd applies to the jobs the caller may
change (``All jobs in cluster 8 have been held``, else ``Couldn't find/hold
all jobs in cluster 8``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from localpool.ads import Ad, evaluate, is_true
from localpool.schedd import eventlog
from localpool.schedd.jobstate import (
    COMPLETED,
    HELD,
    HOLD_BY_USER,
    REMOVED,
    RUNNING,
    request_hold,
    request_release,
    request_remove,
    request_vacate,
)
from localpool.schedd.store import Store
from localpool.security.authz import may_modify
from localpool.security.privs import Account


class Usage(Exception):
    """Bad command line: message on stderr, exit 1 (as HTCondor's tools do)."""


@dataclass(frozen=True)
class Action:
    verb: str  # "Couldn't find/<verb>", "Permission denied to <verb> job"
    past: str  # "Job 8.0 <past>", "All jobs ... have been <past>"


ACTIONS = {
    "condor_rm": Action("remove", "marked for removal"),
    "condor_hold": Action("hold", "held"),
    "condor_release": Action("release", "released"),
    "condor_vacate_job": Action("vacate", "vacated"),
}


def apply(tool: str, ad: Ad, reason: str | None, me: str, now: float) -> bool:
    """Apply one action to one job; False when it does not apply (wrong state)."""
    who = f" (by user {me})"
    status = ad["JobStatus"]
    if tool == "condor_rm":
        if status in (REMOVED, COMPLETED):
            return False
        request_remove(ad, (reason or "via condor_rm") + who, now)
        return True
    if tool == "condor_hold":
        if status in (HELD, REMOVED, COMPLETED):
            return False
        request_hold(ad, (reason or "via condor_hold") + who, HOLD_BY_USER, now)
        return True
    if tool == "condor_release":
        if status != HELD:
            return False
        request_release(ad, (reason or "via condor_release") + who, now)
        return True
    if status != RUNNING:
        return False
    request_vacate(ad)
    return True


def _parse(tool: str, argv: Sequence[str]) -> tuple[str | None, list[str]]:
    reason = None
    targets: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-reason", "-r") and tool != "condor_vacate_job":
            i += 1
            if i >= len(argv):
                raise Usage(f"{tool}: -reason requires an argument")
            reason = argv[i]
        elif arg in ("-all", "-a"):
            targets.append("-all")
        elif arg in ("-name", "-pool"):
            i += 1
        elif arg in ("-fast",):
            pass
        elif arg.startswith("-"):
            raise Usage(f"{tool}: unrecognized option {arg}")
        else:
            targets.append(arg)
        i += 1
    if not targets:
        raise Usage(f"Usage: {tool} [options] [cluster | cluster.proc | user ...]")
    return reason, targets


def _scope(target: str) -> str:
    """The words HTCondor puts after "all jobs" for a constraint target."""
    if target == "-all":
        return ""
    if target.isdigit():
        return f" in cluster {target}"
    return f' of user "{target}"'


def job_action(tool: str, argv: Sequence[str], store: Store, caller: Account) -> int:
    reason, targets = _parse(tool, argv)
    action = ACTIONS[tool]
    now = time.time()
    out: list[str] = []
    err: list[str] = []
    with store.update() as queue:
        for target in targets:
            if "." in target and target.replace(".", "", 1).isdigit():
                ad = queue.jobs.get(target)
                if ad is None:
                    err.append(f"\nJob {target} not found\n")
                elif not may_modify(caller, ad):
                    err.append(f"\nPermission denied to {action.verb} job {target}\n")
                elif _change(tool, queue, ad, reason, caller, now, store):
                    out.append(f"Job {target} {action.past}")
                elif tool == "condor_rm":
                    err.append(f"\nJob {target} not found\n")
                else:
                    err.append(f"\nJob {target} not {action.past.split()[-1]}\n")
                continue
            chosen = [
                ad
                for ad in list(queue.jobs.values())
                if _matches(ad, target) and may_modify(caller, ad)
            ]
            if not chosen:
                err.append(f"\nCouldn't find/{action.verb} all jobs{_scope(target)}\n")
                continue
            for ad in chosen:
                _change(tool, queue, ad, reason, caller, now, store)
            out.append(f"All jobs{_scope(target)} have been {action.past}")
    sys.stdout.write("".join(line + "\n" for line in out))
    sys.stderr.write("".join(err))
    return 1 if err else 0


def _matches(ad: Ad, target: str) -> bool:
    if target == "-all":
        return True
    if target.isdigit():
        return ad["ClusterId"] == int(target)
    return ad.get("Owner") == target


def _change(
    tool: str, queue, ad: Ad, reason: str | None, caller: Account, now: float, store: Store
) -> bool:
    # root's tools act as HTCondor's daemon account: "(by user condor)" (case q_held_by_root)
    me = "condor" if caller.uid == 0 else caller.name
    if not apply(tool, ad, reason, me, now):
        return False
    if tool == "condor_rm" and "LocalpoolStarterPid" not in ad:
        _leave(queue, ad, store)
    if tool == "condor_rm" and isinstance(ad.get("OtherJobRemoveRequirements"), str):
        _remove_others(queue, ad, now, store)
    return True


def _leave(queue, ad: Ad, store: Store) -> None:
    eventlog.aborted(ad, ad["RemoveReason"])
    store.add_history([ad])
    del queue.jobs[f"{ad['ClusterId']}.{ad['ProcId']}"]


def _remove_others(queue, ad: Ad, now: float, store: Store) -> None:
    """The schedd removes the jobs a removed job's OtherJobRemoveRequirements names.

    condor_submit_dag sets it to ``DAGManJobId =?= <cluster>``: removing the
    DAGMan job removes its node jobs.
    """
    constraint = ad["OtherJobRemoveRequirements"]
    why = (
        f"removed because <OtherJobRemoveRequirements = {constraint}> fired when job "
        f"{ad['ClusterId']}.{ad['ProcId']} was removed"
    )
    for other in list(queue.jobs.values()):
        if other is ad or other["JobStatus"] in (REMOVED, COMPLETED):
            continue
        try:
            hit = is_true(evaluate(constraint, other))
        except Exception:
            hit = False
        if hit:
            request_remove(other, why, now)
            if "LocalpoolStarterPid" not in other:
                _leave(queue, other, store)
