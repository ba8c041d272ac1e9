"""What a notebook job's state means for its server: the decisions ``poll()`` acts on.

JupyterHub calls ``stop()`` only while ``poll()`` says the server runs, so poll
must end a dead server's job itself, and it must never call a job gone on a
failed or empty look. :func:`judge` reads the watcher's :class:`JobState` and
says which case it is; the spawner (:mod:`~condorspawner.spawner`) acts on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from condorspawner.jobad import COMPLETED, HELD, IDLE, REMOVED, RUNNING
from condorspawner.joblog import ended_in_log
from condorspawner.watcher import JobState


class Case(Enum):
    UNKNOWN = "unknown"  # no answer about it yet: the server counts as running
    MISSING = "missing"  # in neither queue nor history: its event log decides, or a bound
    GONE = "gone"  # it left the queue, or is leaving it: report it with its exit code
    END = "end"  # dead but still queued (held, evicted too long): end it safely first
    WAITING = "waiting"  # idle after an eviction, or suspended: HTCondor runs it again
    RUNNING = "running"  # its tunnel must reach this run


@dataclass(frozen=True)
class Verdict:
    case: Case
    code: int = 0  # GONE: the status JupyterHub is told
    why: str = ""  # END: what ends it


def exit_status(code: object) -> int:
    """JupyterHub's view of an ended job: its non-zero exit code, 1 without one, else 0."""
    if isinstance(code, int) and code != 0:
        return code
    return 1 if code is None else 0


def judge(state: JobState, job_id: str, *, start_timeout: float) -> Verdict:
    """The case of a followed job (see :class:`Case`)."""
    if state.missing_since is not None:
        return Verdict(Case.MISSING)
    ad = state.ad
    if ad is None:
        return Verdict(Case.UNKNOWN)
    status = ad.get("JobStatus")
    if state.gone or status in (REMOVED, COMPLETED):
        return Verdict(Case.GONE, code=exit_status(ad.get("ExitCode")))
    if status == HELD:
        return Verdict(Case.END, why=f"HTCondor held job {job_id}: {ad.get('HoldReason')}")
    if status == IDLE:
        # the schedd's clock (ServerTime, from the same answer), not the hub's
        now = ad.get("ServerTime") or time.time()
        waited = now - (ad.get("EnteredCurrentStatus") or now)
        if waited > start_timeout:
            return Verdict(
                Case.END, why=f"job {job_id} was evicted and waited {waited:.0f} s to run again"
            )
    if status == RUNNING:
        return Verdict(Case.RUNNING)
    return Verdict(Case.WAITING)


def gone_why(event_log: str, job_id: str, missing_for: float, bound: float) -> str | None:
    """A job in neither queue nor history (for ``missing_for`` seconds): what its own
    event log says, else after ``bound`` seconds that it is taken as gone; None while
    it may still show up."""
    ended = ended_in_log(event_log, job_id)
    if ended:
        return f"job {job_id} {ended} (its event log says so)"
    if missing_for < bound:
        return None
    return (
        f"job {job_id} is in neither the queue nor the history since "
        f"{missing_for:.0f} s; its server is taken as gone"
    )
