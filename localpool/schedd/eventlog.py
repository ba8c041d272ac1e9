"""Job event log (``log = ...``) in HTCondor's text format.

Each event is ``NNN (CCC.PPP.000) YYYY-MM-DD HH:MM:SS text``, detail lines
indented with a tab, and a closing ``...`` line, exactly as a real 25.0
schedd and starter write it, so ``htcondor2.JobEventLog`` reads it. The log
is the user's file: it is opened as the job's owner, never as root.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterable, Mapping
from typing import Any

from localpool.security.privs import as_owner

SUBMIT, EXECUTE, EVICTED, TERMINATED, ABORTED, HELD, RELEASED = 0, 1, 4, 5, 9, 12, 13
ATTRIBUTE_SET, FILE_TRANSFER = 33, 40


def _header(code: int, ad: Mapping[str, Any], when: float | None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when or time.time()))
    return f"{code:03d} ({ad['ClusterId']:03d}.{ad['ProcId']:03d}.000) {stamp} "


def write(
    ad: Mapping[str, Any],
    code: int,
    text: str,
    details: Iterable[str] = (),
    when: float | None = None,
) -> None:
    """Append one event to the job's user log and a DAG node's default node log, if any."""
    paths = dict.fromkeys(p for p in (ad.get("UserLog"), ad.get("DAGManNodesLog")) if p)
    body = _header(code, ad, when) + text + "\n" + "".join(f"\t{d}\n" for d in details) + "...\n"
    for path in paths:
        try:
            with as_owner(ad.get("Owner")), open(path, "a", encoding="utf-8") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(body)
        except OSError:
            pass  # like the schedd: a user log that cannot be written does not stop the job


def _usage(lines: list[str]) -> list[str]:
    zero = "Usr 0 00:00:00, Sys 0 00:00:00"
    return [f"\t{zero}  -  {what}" for what in lines]


def submitted(ad: Mapping[str, Any], address: str) -> None:
    notes = ad.get("SubmitEventNotes")  # submit_event_notes (DAGMan's "DAG Node: A")
    write(ad, SUBMIT, f"Job submitted from host: {address}", [notes] if notes else [])


def executing(
    ad: Mapping[str, Any], address: str, slot: str, scratch: str, resources: Mapping[str, int]
) -> None:
    write(
        ad,
        EXECUTE,
        f"Job executing on host: {address}",
        [
            f"SlotName: {slot}",
            f'CondorScratchDir = "{scratch}"',
            *(f"{k} = {v}" for k, v in resources.items()),
        ],
    )


def transfer(ad: Mapping[str, Any], what: str) -> None:
    write(ad, FILE_TRANSFER, what)


def terminated(ad: Mapping[str, Any], exit_code: int | None, signal: int | None) -> None:
    if signal is not None:
        first = f"(0) Abnormal termination (signal {signal})"
    else:
        first = f"(1) Normal termination (return value {exit_code})"
    usage = _usage(
        ["Run Remote Usage", "Run Local Usage", "Total Remote Usage", "Total Local Usage"]
    )
    write(ad, TERMINATED, "Job terminated.", [first, *usage])


def evicted(ad: Mapping[str, Any], reason: str = "Claim deactivated") -> None:
    usage = _usage(["Run Remote Usage", "Run Local Usage"])
    write(
        ad,
        EVICTED,
        "Job was evicted. Code 1009 Subcode 0",
        ["(0) CPU times", *usage, f"Reason: {reason}"],
    )


def aborted(ad: Mapping[str, Any], reason: str) -> None:
    write(ad, ABORTED, "Job was aborted.", [reason])


def held(ad: Mapping[str, Any], reason: str, code: int, subcode: int = 0) -> None:
    write(ad, HELD, "Job was held.", [reason, f"Code {code} Subcode {subcode}"])


def released(ad: Mapping[str, Any], reason: str) -> None:
    write(ad, RELEASED, "Job was released.", [reason])


def attribute_set(ad: Mapping[str, Any], name: str, value: str) -> None:
    write(ad, ATTRIBUTE_SET, f"Setting job attribute {name} to {value}")
