"""One queue watcher per schedd and hub: a single ``condor_q`` per interval for every notebook.

Spawners register the jobs they follow; the watcher asks the schedd for all
of this hub's jobs at once (``CondorSpawnerHub =?= "<hub id>"``), faster while
some spawn is waiting, with jitter so that many hubs do not beat in step.
A job missing from the queue is looked up in ``condor_history`` at once,
then, while the history does not know it either, less and less often (the
interval doubling up to a minute). A query that fails or times out changes
nothing: the jobs' state is then "unknown", never "gone". A job that a
successful look finds in neither is marked ``missing`` (since when), for the
spawner to settle from the job's own event log or after a bound.

:func:`follow_job` is the one loop that follows a starting job through these
states (the spawner's spawn and ``condorsub lab`` both use it): held, ended
and queued past the start timeout are exceptions each caller words itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from condorspawner.condor import Condor, CondorError
from condorspawner.jobad import COMPLETED, HELD, HUB_ATTR, IDLE, REMOVED, RUNNING, id_of, is_

log = logging.getLogger("condorspawner.watcher")

ATTRIBUTES = (
    "ClusterId",
    "ProcId",
    "JobStatus",
    "Owner",
    "HoldReason",
    "HoldReasonCode",
    "LastRejMatchReason",
    "RemoteHost",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "EnteredCurrentStatus",
    "ServerTime",  # the schedd's clock when it answered (the schedd adds it to each ad)
    "NumJobStarts",
    "JobCurrentStartDate",
    "RemoveReason",
    "Err",
    "Iwd",
)
HISTORY_RECHECK = 60.0  # at most this long between history look-ups of a missing job


@dataclass
class JobState:
    """What the watcher last learned about one job."""

    job_id: str
    ad: dict[str, Any] | None = None  # latest ad (queue or history)
    in_queue: bool = True
    gone: bool = False  # left the queue: the history says how
    missing_since: float | None = None  # monotonic: in neither queue nor history since
    history_checked: float = 0.0
    history_misses: int = 0
    # it left the queue and condor_history failed: its end is not known yet (the
    # queue's answer, and so every other job of the schedd, is not in doubt)
    history_error: str | None = None
    updated: float = 0.0  # monotonic time of the last successful look
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> int | None:
        return self.ad.get("JobStatus") if self.ad else None

    @property
    def in_doubt(self) -> bool:
        """Not in the queue, and the history did not answer: ``ad`` may be out of date."""
        return self.history_error is not None


class QueueWatcher:
    """Follows every job of one hub on one schedd with one query per interval."""

    _instances: ClassVar[dict[tuple[str, str, str], QueueWatcher]] = {}

    def __init__(
        self,
        condor: Condor,
        hub_id: str,
        interval: float = 10.0,
        fast_interval: float = 1.0,
        jitter: float = 0.1,
    ) -> None:
        self.condor = condor
        self.hub_id = hub_id
        self.interval = interval
        self.fast_interval = fast_interval
        self.jitter = jitter
        self.jobs: dict[str, JobState] = {}
        self.pending: set[str] = set()  # jobs with a spawn waiting on them
        self.last_error: str | None = None
        self.last_success: float = 0.0
        self.queries = 0  # condor_q calls made (for tests and benchmarks)
        self.history_queries = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    @classmethod
    def shared(cls, condor: Condor, hub_id: str, **kwargs: Any) -> QueueWatcher:
        """The one watcher for this schedd, pool and hub (made on first use)."""
        key = (condor.pool.schedd, condor.pool.collector, hub_id)
        watcher = cls._instances.get(key)
        if watcher is None or (
            watcher._task is not None and watcher._task.done() and watcher._loop_closed()
        ):
            watcher = cls._instances[key] = cls(condor, hub_id, **kwargs)
        for name, value in kwargs.items():
            setattr(watcher, name, value)
        return watcher

    @classmethod
    def failing(cls, collector: str, hub_id: str) -> set[str]:
        """The schedds whose last query by this hub failed (they do not answer now)."""
        return {
            schedd
            for (schedd, coll, hub), watcher in cls._instances.items()
            if coll == collector and hub == hub_id and watcher.last_error and schedd
        }

    @classmethod
    def total_queries(cls, hub_id: str) -> int:
        """condor_q calls of all this hub's watchers (one per schedd per interval)."""
        return sum(w.queries for (_s, _c, hub), w in cls._instances.items() if hub == hub_id)

    def _loop_closed(self) -> bool:
        try:
            return self._task.get_loop().is_closed()  # type: ignore[union-attr]
        except AttributeError:
            return True

    @property
    def _where(self) -> str:
        """For the log: which schedd did not answer (a site with several names it)."""
        schedd = getattr(getattr(self.condor, "pool", None), "schedd", "")
        return f" -name {schedd}" if schedd else ""

    @property
    def constraint(self) -> str:
        return is_(HUB_ATTR, self.hub_id)

    # --- registration ---------------------------------------------------------

    def watch(self, job_id: str, *, pending: bool = False) -> JobState:
        """Follow a job (again); only a new job or a new pending spawn wakes the loop."""
        news = job_id not in self.jobs or (pending and job_id not in self.pending)
        state = self.jobs.setdefault(job_id, JobState(job_id))
        if pending:
            self.pending.add(job_id)
        self._ensure_running()
        if news:
            self._wake.set()
        return state

    def settle(self, job_id: str) -> None:
        """The spawn waiting on this job is over: back to the normal interval."""
        self.pending.discard(job_id)

    def forget(self, job_id: str) -> None:
        self.pending.discard(job_id)
        self.jobs.pop(job_id, None)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- the loop -------------------------------------------------------------

    async def _run(self) -> None:
        while self.jobs:
            await self.refresh()
            base = self.fast_interval if self.pending else self.interval
            delay = base * (1 + random.uniform(-self.jitter, self.jitter))  # noqa: S311
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def ensure_fresh(self, max_age: float) -> None:
        """States at most ``max_age`` seconds old; concurrent callers share one query."""
        if time.monotonic() - self.last_success <= max_age:
            return
        async with self._lock:
            if time.monotonic() - self.last_success > max_age:
                await self._refresh()

    async def refresh(self) -> None:
        """One look at the queue (and the history for jobs that left it)."""
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        self.queries += 1
        try:
            ads = await self.condor.q(
                constraint=self.constraint, attributes=ATTRIBUTES, all_users=True
            )
        except CondorError as err:
            self.last_error = str(err)
            log.warning(
                "condor_q%s failed (job states unknown until it answers): %s", self._where, err
            )
            return
        now = time.monotonic()
        self.last_error = None
        self.last_success = now
        seen = {id_of(ad): ad for ad in ads}
        missing = []
        for job_id, state in list(self.jobs.items()):
            ad = seen.get(job_id)
            if ad is not None:
                self._update(state, ad, in_queue=True)
            elif not state.gone and now - state.history_checked >= self._history_wait(state):
                missing.append(job_id)
        if missing:
            await self._look_in_history(missing)

    def _history_wait(self, state: JobState) -> float:
        if not state.history_misses:
            return 0.0
        return min(HISTORY_RECHECK, self.interval * 2 ** min(state.history_misses, 16))

    async def _look_in_history(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        self.history_queries += 1
        wanted = " || ".join(
            f"(ClusterId == {c} && ProcId == {p})" for c, p in (i.split(".") for i in ids)
        )
        try:
            ads = await self.condor.history(
                constraint=wanted, attributes=ATTRIBUTES, limit=len(ids)
            )
        except CondorError as err:
            # only these jobs are in doubt; asked again later, as after a miss
            log.warning(
                "condor_history%s failed (the end of %s is not known yet): %s",
                self._where,
                ", ".join(ids),
                err,
            )
            now = time.monotonic()
            for state in filter(None, map(self.jobs.get, ids)):
                state.history_checked, state.history_error = now, str(err)
                state.history_misses += 1
            return
        found = {id_of(ad): ad for ad in ads}
        now = time.monotonic()
        for job_id in ids:
            state = self.jobs.get(job_id)
            if state is None:
                continue
            state.history_checked, state.history_error = now, None
            if job_id in found:
                self._update(state, found[job_id], in_queue=False)
            else:
                state.history_misses += 1
            if job_id not in found and state.missing_since is None:
                # in neither: not (yet) known; the spawner decides after a bound
                state.missing_since = now
                state.changed.set()
                state.changed = asyncio.Event()

    def _update(self, state: JobState, ad: dict[str, Any], *, in_queue: bool) -> None:
        before = (state.ad, state.in_queue)
        state.ad = ad
        state.in_queue = in_queue
        state.gone = not in_queue
        state.missing_since, state.history_misses, state.history_error = None, 0, None
        state.updated = time.monotonic()
        if before != (state.ad, state.in_queue):
            state.changed.set()
            state.changed = asyncio.Event()


# --- following one job until it is where the caller wants it ----------------------------


class JobFate(Exception):
    """What became of a followed job, for the caller to word (``ad``: its last ad)."""

    def __init__(self, ad: dict[str, Any]) -> None:
        super().__init__(ad.get("JobStatus"))
        self.ad = ad


class JobHeld(JobFate):
    """HTCondor held the job (``reason``: its HoldReason)."""

    @property
    def reason(self) -> str:
        return str(self.ad.get("HoldReason", "no reason given"))


class JobEnded(JobFate):
    """The job completed, was removed, or left the queue (the history's ad)."""


class StillQueued(JobFate):
    """The job waited in the queue longer than the start timeout allows."""

    def __init__(self, ad: dict[str, Any], reason: str, timeout: float) -> None:
        super().__init__(ad)
        self.reason, self.timeout = reason, timeout


async def follow_job(
    state: JobState,
    done: Callable[[dict[str, Any]], bool],
    *,
    start_timeout: float,
    on_idle: Callable[[str, bool], None] | None = None,
    on_running: Callable[[dict[str, Any]], None] | None = None,
    stop: asyncio.Event | None = None,
    task: asyncio.Future[Any] | None = None,
) -> dict[str, Any] | None:
    """Follow a job the watcher updates until ``done(ad)`` (that ad), ``stop`` is set or
    ``task`` ends (None): one place for what a starting job's states mean.

    Raises :class:`JobHeld`, :class:`JobEnded`, or :class:`StillQueued` when it is
    idle ``start_timeout`` seconds after this call. ``on_idle(reason, new)`` is
    called at each look while it waits (``new``: the reason changed),
    ``on_running(ad)`` the first time it is seen running.
    """
    idle_limit = time.monotonic() + start_timeout
    said_idle: str | None = None
    said_running = False
    while not (stop is not None and stop.is_set()) and not (task is not None and task.done()):
        ad = state.ad
        if ad is not None:
            status = ad.get("JobStatus")
            if status == HELD:
                raise JobHeld(ad)
            if state.gone or status in (REMOVED, COMPLETED):
                raise JobEnded(ad)
            if status == IDLE:
                reason = ad.get("LastRejMatchReason") or "waiting to be matched"
                if on_idle is not None:
                    on_idle(reason, reason != said_idle)
                said_idle = reason
                if time.monotonic() > idle_limit:
                    raise StillQueued(ad, reason, start_timeout)
            if status == RUNNING and not said_running:
                said_running = True
                if on_running is not None:
                    on_running(ad)
            if done(ad):
                return ad
        await _next_look(state, stop, task)
    return None


async def _next_look(
    state: JobState, stop: asyncio.Event | None, task: asyncio.Future[Any] | None
) -> None:
    """Until the job's state changes, ``stop`` is set or ``task`` ends; a second at most."""
    waits = [asyncio.ensure_future(e.wait()) for e in (state.changed, stop) if e is not None]
    try:
        await asyncio.wait(
            [*waits, *([task] if task is not None else [])],
            timeout=1.0,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiting in waits:
            waiting.cancel()
