"""Ending a notebook job without losing its work directory.

A removed job transfers nothing back, while a job evicted by a hold transfers
its output (``when_to_transfer_output = ON_EXIT_OR_EVICT`` with
``SpoolOnEvict = false``). So a job is finished by holding it, waiting until
HTCondor shows it held with no ``RemoteHost`` (the transfer is over), and only
then removing it. A job that never ran, or is idle again after an eviction,
has nothing in flight and is removed at once. A job whose state cannot be
learned, or that does not get there in time, is never removed: it stays held
and the caller keeps following it (:class:`JobNotFinished` says what to do).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from condorspawner.condor import Condor, CondorError, JobNotFound
from condorspawner.jobad import COMPLETED, HELD, IDLE, REMOVED, RUNNING, SUSPENDED
from condorspawner.watcher import QueueWatcher


class JobNotFinished(RuntimeError):
    """The job could not be ended safely; it is kept (held), and the message says why."""


def output_is_home(ad: dict[str, Any]) -> bool:
    """Nothing of the job's is on an execute point any more: removing it loses nothing."""
    status = ad.get("JobStatus")
    if status in (COMPLETED, REMOVED):
        return True
    return status in (HELD, IDLE) and not ad.get("RemoteHost")


async def finish_job(
    condor: Condor,
    watcher: QueueWatcher,
    job_id: str,
    *,
    user: str | None,
    reason: str,
    timeout: float,
    poll: float = 0.5,
) -> dict[str, Any] | None:
    """Hold (if it runs), wait for its output, then remove; returns the job's last ad.

    Raises :class:`JobNotFinished` if that cannot be done within ``timeout``.
    """
    state = watcher.watch(job_id)
    deadline = time.monotonic() + timeout
    held = False
    while True:
        await watcher.ensure_fresh(max_age=poll)
        ad = state.ad
        if state.gone:
            return ad
        known = ad is not None and watcher.last_error is None and not state.in_doubt
        if known and ad.get("JobStatus") in (COMPLETED, REMOVED):
            return ad  # leaving the queue by itself
        if known and output_is_home(ad):
            break
        if known and ad.get("JobStatus") in (RUNNING, SUSPENDED) and not held:
            try:
                await condor.hold(
                    [job_id], reason=f"{reason}: saving the work directory", user=user
                )
                held = True
            except JobNotFound:
                held = True  # gone meanwhile: the next look says how
            except CondorError as err:
                if time.monotonic() > deadline:
                    raise JobNotFinished(
                        f"Job {job_id} could not be held to bring its work directory back "
                        f"({err}); it is still running and was not removed."
                    ) from None
        if time.monotonic() > deadline:
            if not known:
                raise JobNotFinished(
                    f"The state of job {job_id} is unknown (the schedd does not answer: "
                    f"{watcher.last_error}); it was not removed. Try again later."
                )
            raise JobNotFinished(
                f"Job {job_id} is still bringing its work directory back after {timeout:g} s; "
                "it stays held and was not removed, so nothing is lost. Stop the server "
                "again later, or ask the admin."
            )
        await asyncio.sleep(poll)
    try:
        await condor.rm([job_id], reason=reason, user=user)
    except JobNotFound:
        pass
    except CondorError as err:
        raise JobNotFinished(
            f"Job {job_id} is held with its work directory back, but condor_rm failed ({err}); "
            "it is kept. Stop the server again later, or ask the admin."
        ) from None
    # removal of a job with nothing running is immediate; look once more, briefly
    end = time.monotonic() + min(timeout, 10.0)
    while not state.gone and time.monotonic() < end:
        await asyncio.sleep(poll)
        await watcher.ensure_fresh(max_age=poll)
    return state.ad
