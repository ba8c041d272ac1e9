"""Which schedd a new job goes to, when the site has several access points.

The measure of load is documented and simple: ``TotalRunningJobs +
TotalIdleJobs`` from the collector's schedd ads (``condor_status -schedd``),
the jobs each schedd is busy with; the least loaded wins, ties broken at
random. A schedd never gets a new job when it does not answer: when the
collector has no ad for it, when this process's last query of it failed
(the queue watchers report that), or when a submission to it just failed
(it is then left out for a while). The status query is cached for a few
seconds (one ``condor_status`` per interval, however many spawns); the jobs
this process sent to each schedd since that answer count in its load, so a
burst of spawns is spread instead of all going to the schedd that was least
loaded when the collector was asked. A job
stays with its schedd for life: the spawner keeps the name in its state and
names it (``-name``) on every command.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from condorspawner.condor import Condor, CondorError, ScheddUnavailable
from condorspawner.jobad import string
from condorspawner.site import SCHEDD_NAME_RE, Pool

STATUS_TTL = 5.0  # seconds a condor_status -schedd answer is reused
DOWN_FOR = 60.0  # seconds a schedd a submission could not reach is left out


class NoSchedd(CondorError):
    """No schedd of the site answers: nothing can be submitted now."""

    def __init__(self, detail: str) -> None:
        super().__init__(["condor_status", "-schedd"], None, "", detail)


def multi(pool: Pool) -> bool:
    """Does the site name several schedds (a list or a collector constraint)?"""
    return bool(pool.schedds or pool.schedd_constraint)


def load(ad: Mapping[str, Any]) -> int:
    """The documented measure: running plus idle jobs."""
    return int(ad.get("TotalRunningJobs") or 0) + int(ad.get("TotalIdleJobs") or 0)


class ScheddChooser:
    """The site's schedds, their load (cached), and the ones that do not answer."""

    _instances: ClassVar[dict[tuple[Any, ...], ScheddChooser]] = {}

    def __init__(self, condor: Condor, ttl: float = STATUS_TTL) -> None:
        self.condor = condor
        self.ttl = ttl
        self.down: dict[str, float] = {}  # name -> monotonic time until it counts again
        self.queries = 0  # condor_status calls (tests, benchmarks)
        self._ads: list[dict[str, Any]] = []
        self._sent: dict[str, int] = {}  # jobs sent to each schedd since the last answer
        self._fetched = -1e9
        self._lock = asyncio.Lock()

    @classmethod
    def shared(cls, condor: Condor) -> ScheddChooser:
        pool = condor.pool
        key = (pool.collector, pool.schedds, pool.schedd_constraint, pool.run_as, pool.bin_dir)
        chooser = cls._instances.get(key)
        if chooser is None:
            chooser = cls._instances[key] = cls(condor)
        return chooser

    def constraint(self) -> str:
        pool = self.condor.pool
        if pool.schedd_constraint:
            return pool.schedd_constraint
        return " || ".join(f"Name == {string(name)}" for name in pool.schedds)

    async def ads(self) -> list[dict[str, Any]]:
        """The schedds' ads, at most ``ttl`` seconds old (concurrent callers share a query).

        Only ads whose ``Name`` is a schedd name: it goes onto ``-name`` and into
        the spawner's state, and the collector's answer is not ours to trust.
        """
        async with self._lock:
            if time.monotonic() - self._fetched > self.ttl:
                self.queries += 1
                ads = await self.condor.schedd_ads(self.constraint())
                self._ads = [a for a in ads if SCHEDD_NAME_RE.fullmatch(str(a.get("Name", "")))]
                self._fetched = time.monotonic()
                self._sent = {}
            return list(self._ads)

    def mark_down(self, name: str, seconds: float = DOWN_FOR) -> None:
        self.down[name] = time.monotonic() + seconds

    def answering(self, names: Iterable[str], failing: Iterable[str] = ()) -> list[str]:
        now = time.monotonic()
        bad = set(failing) | {n for n, until in self.down.items() if until > now}
        return [n for n in names if n not in bad]

    async def choose(self, *, failing: Iterable[str] = (), exclude: Iterable[str] = ()) -> str:
        """The least loaded schedd that answers (ties at random); :class:`NoSchedd` if none."""
        try:
            ads = await self.ads()
        except CondorError as err:
            raise NoSchedd(f"the collector did not list the schedds: {err}") from None
        wanted = set(self.condor.pool.schedds)
        by_name = {str(ad.get("Name")): ad for ad in ads if not wanted or ad.get("Name") in wanted}
        usable = self.answering(by_name, [*failing, *exclude])
        if not usable:
            known = ", ".join(sorted(by_name)) or "none listed by the collector"
            raise NoSchedd(f"no schedd answers (schedds: {known})")
        loads = {n: load(by_name[n]) + self._sent.get(n, 0) for n in usable}
        least = min(loads.values())
        name = random.choice([n for n in usable if loads[n] == least])  # noqa: S311
        self._sent[name] = self._sent.get(name, 0) + 1  # counted until the next answer
        return name


async def submit_somewhere(
    condor: Condor,
    submit: Any,
    *,
    failing: Iterable[str] = (),
    chosen: str | None = None,
) -> tuple[str | None, Any]:
    """Run ``submit(condor_for_schedd)`` on the least loaded schedd; on to the next
    if that one does not answer. Returns (schedd name or None for a single-schedd
    site, what ``submit`` returned). ``chosen``: that schedd, no choice."""
    if chosen or not multi(condor.pool):
        return chosen, await submit(condor.for_schedd(chosen))
    chooser = ScheddChooser.shared(condor)
    tried: list[str] = []
    while True:
        name = await chooser.choose(failing=failing, exclude=tried)
        try:
            return name, await submit(condor.for_schedd(name))
        except ScheddUnavailable:
            chooser.mark_down(name)
            tried.append(name)
