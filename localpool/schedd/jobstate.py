"""A job's states and the changes of state the tools and the pool process share.

The status codes are HTCondor's ``JobStatus``; the file names are those a
job's directory under ``jobs/`` holds while its starter runs. A tool
(``condor_hold``, ``condor_rm``, ...) only marks a running job; the pool
process stops its starter and finishes the change (``localpool.schedd.scheduler``).
"""

from __future__ import annotations

from localpool.ads import Ad
from localpool.schedd import eventlog
from localpool.schedd.store import PoolConfig

IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5
STOP_FILE, RESULT_FILE, STARTER_FILE, JOB_PID_FILE = (
    "stop",
    "result.json",
    "starter.json",
    "job.pid",
)
HOLD_BY_USER, HOLD_PERIODIC, HOLD_DURATION = 1, 3, 47


def shadow_spawned(ad: Ad) -> None:
    """The run's dates, as the real schedd sets them when it spawns the shadow
    (``add_shadow_birthdate``), after it marked the job running: a query in between
    sees ``JobStatus == 2`` with the previous run's ``JobCurrentStartDate``, or none."""
    start = ad.pop("LocalpoolRunStart", None)
    ad.pop("LocalpoolShadowDue", None)
    if start is None:
        return
    if "JobCurrentStartDate" in ad:
        ad["JobLastStartDate"] = ad["JobCurrentStartDate"]
    ad.setdefault("JobStartDate", start)
    ad.update(JobCurrentStartDate=start, JobCurrentStartExecutingDate=start)


def schedd_address(config: PoolConfig) -> str:
    """The address string the pool's schedd shows in events (shared-port style)."""
    return f"<127.0.0.1:9618?addrs=127.0.0.1-9618&alias={config.host}&noUDP&sock=schedd_localpool>"


def duration(seconds: float) -> str:
    """HTCondor's D+HH:MM:SS."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    return f"{days}+{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def request_hold(ad: Ad, reason: str, code: int, now: float, subcode: int = 0) -> None:
    """Hold a job; a running one is stopped by the pool process, which logs the hold."""
    ad.update(
        JobStatus=HELD,
        LastJobStatus=ad["JobStatus"],
        EnteredCurrentStatus=int(now),
        HoldReason=reason,
        HoldReasonCode=code,
        HoldReasonSubCode=subcode,
        NumSystemHolds=ad.get("NumSystemHolds", 0) + (code != HOLD_BY_USER),
    )
    if "LocalpoolStarterPid" in ad:
        ad["LocalpoolStop"] = "hold"
    else:
        eventlog.held(ad, reason, code, subcode)


def request_release(ad: Ad, reason: str, now: float) -> None:
    for key in ("HoldReason", "HoldReasonCode", "HoldReasonSubCode"):
        ad.pop(key, None)
    ad.update(
        JobStatus=IDLE, LastJobStatus=HELD, EnteredCurrentStatus=int(now), ReleaseReason=reason
    )
    eventlog.released(ad, reason)


def request_remove(ad: Ad, reason: str, now: float) -> None:
    """Mark for removal; the pool process finishes it (after stopping a running one)."""
    ad.update(
        LastJobStatus=ad["JobStatus"],
        JobStatus=REMOVED,
        EnteredCurrentStatus=int(now),
        RemoveReason=reason,
    )
    if "LocalpoolStarterPid" in ad:
        ad["LocalpoolStop"] = "remove"


def request_vacate(ad: Ad) -> None:
    if "LocalpoolStarterPid" in ad:
        ad["LocalpoolStop"] = "vacate"
