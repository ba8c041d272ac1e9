"""The HTCondor words this product speaks, defined once, and what an ad says of its run.

The job attributes it sets on its jobs (public: anyone may read the queue, and
set the same names on their own jobs), the ``JobStatus`` codes it reads, a
job's id from its ad, and ClassAd string literals: for constraints, and for
submit descriptions and configuration files, where ``$`` would start a macro.
Templates get the attribute names as ``attr`` (``MY.{{ attr.hub }} = ...``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import classad2

from condorspawner.protocol import int_value, job_start

KIND_ATTR = "CondorSpawnerKind"  # "notebook", "batch" or "interactive"
HUB_ATTR = "CondorSpawnerHub"  # the hub's id: one query finds all of a hub's notebooks
USER_ATTR = "CondorSpawnerUser"
SERVER_ATTR = "CondorSpawnerServer"  # the named server ("" for the default one)
SPAWN_ATTR = "CondorSpawnerSpawn"  # one spawn: found again when condor_submit's answer is lost
MARKS = {
    "kind": KIND_ATTR,
    "hub": HUB_ATTR,
    "user": USER_ATTR,
    "server": SERVER_ATTR,
    "spawn": SPAWN_ATTR,
}

# JobStatus
IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5
SUSPENDED = 7  # still on its execute point, its files with it

RUN_DATED_WITHIN = 60  # s: far longer than a schedd takes from "running" to its shadow


def id_of(ad: Mapping[str, Any]) -> str:
    """``Cluster.Proc`` of a job ad."""
    return f"{ad['ClusterId']}.{ad['ProcId']}"


def string(text: str) -> str:
    """A ClassAd string literal (for a constraint on a command line)."""
    return classad2.quote(text)


def config_string(text: str) -> str:
    """A ClassAd string literal inside a submit description or a configuration file,
    where ``$`` would start a macro: it is written as its octal escape."""
    return classad2.quote(text).replace("$", "\\044")


def is_(attr: str, value: str) -> str:
    """``attr =?= "value"``: ClassAd's ``==`` ignores case, ``=?=`` does not."""
    return f"{attr} =?= {string(value)}"


def run_dated(ad: Mapping[str, Any]) -> bool:
    """Whether a running job's ad names its run: the schedd marks a job running
    (``JobStatus``, ``EnteredCurrentStatus``) and dates the run only when it spawns the
    shadow, a moment later (``add_shadow_birthdate``); an ad in between has the previous
    run's ``JobCurrentStartDate``, or none. (A suspension and its continue leave
    ``EnteredCurrentStatus`` as it was.) Still undated long after: the date is trusted
    rather than waited for without end."""
    entered, start = int_value(ad.get("EnteredCurrentStatus")), job_start(ad)
    if entered is None or (start is not None and start >= entered):
        return True
    now = int_value(ad.get("ServerTime"))
    return (time.time() if now is None else now) - entered > RUN_DATED_WITHIN
