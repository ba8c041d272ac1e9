"""Who may do what to a job, as an HTCondor schedd decides it.

Reading the queue and the history is open to everybody. Changing a job
(remove, hold, release, vacate, ssh into it) is for its owner and for the
queue super-user (root; for a pool run by an ordinary account, that account).
Some attributes are the pool's to set, never a user's: the owner, the job's
identity, and localpool's own ``Localpool*`` bookkeeping (a forged
``LocalpoolStarterPid`` would have root signal any process).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from localpool.security.privs import Account

# What the schedd keeps for itself (HTCondor's IMMUTABLE_JOB_ATTRS and the job's identity).
PROTECTED = frozenset(
    a.lower()
    for a in ("Owner", "User", "ClusterId", "ProcId", "GlobalJobId", "MyType", "TargetType")
)


def is_super_user(caller: Account) -> bool:
    return caller.uid == 0 or caller.uid == os.geteuid()


def may_modify(caller: Account, ad: Mapping[str, Any]) -> bool:
    """May ``caller`` remove, hold, release, vacate or ssh into this job?"""
    return is_super_user(caller) or ad.get("Owner") == caller.name


def protection(name: str) -> str | None:
    """Why no user may set this attribute, in HTCondor's words; None: they may.

    "immutable": the job's identity (HTCondor's IMMUTABLE_JOB_ATTRS);
    "secure": localpool's bookkeeping, which only the pool sets (as only the
    schedd sets HTCondor's SECURE_JOB_ATTRS).
    """
    low = name.lower()
    if low in PROTECTED:
        return "immutable"
    if low.startswith("localpool"):
        return "secure"
    return None


def settable(name: str) -> bool:
    """May a user set this attribute (submit description, chirp, condor_qedit)?"""
    return protection(name) is None
