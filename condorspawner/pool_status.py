"""What the pool can give right now: free slots per container OS and size, for the form.

One ``condor_status`` per interval for the whole hub (all users, all form
renders), run as the hub's own account. A failed or slow query shows nothing:
the form must never break or wait long because the collector does not answer.

A slot counts for an OS when it advertises that OS in ``ContainerOSes`` (the
execute-point configuration of ``containers.epconfig``; a comma-separated
string like ``ContainerOSList`` is read too). A partitionable slot holds as
many jobs of a size as its free CPUs, memory and GPUs allow; a static slot
holds one when it is big enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from condorspawner.condor import Condor, CondorError
from condorspawner.units import format_size_mb
from containers.epconfig import OFFERED_ATTR

LIST_ATTR = "ContainerOSList"  # the same list as one comma-separated string
ATTRIBUTES = (
    "Name",
    "State",
    "PartitionableSlot",
    "Cpus",
    "Memory",
    "GPUs",
    OFFERED_ATTR,
    LIST_ATTR,
)
CONSTRAINT = 'State == "Unclaimed"'
QUERY_TIMEOUT = 5.0  # seconds a form render may wait for the collector


@dataclass(frozen=True)
class FreeSlot:
    """The unclaimed part of one slot."""

    cpus: int
    memory_mb: int
    gpus: int
    oses: tuple[str, ...] | None  # lower-case OS names; None: the slot advertises none
    partitionable: bool

    def room_for(self, os_name: str | None, cpus: int, memory_mb: int, gpus: int) -> int:
        """How many jobs of this size and OS can start here now (None: any OS)."""
        if os_name is not None and (self.oses is None or os_name.lower() not in self.oses):
            return 0
        fits = [self.cpus // max(cpus, 1), self.memory_mb // max(memory_mb, 1)]
        if gpus:
            fits.append(self.gpus // gpus)
        most = min(fits)
        return most if self.partitionable else min(most, 1)


def _number(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _oses(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return None
    return tuple(str(v).strip().lower() for v in value if str(v).strip())


def parse_slots(ads: Iterable[Mapping[str, Any]]) -> list[FreeSlot]:
    """Free slots from ``condor_status -json`` ads (the unclaimed ones)."""
    return [
        FreeSlot(
            cpus=_number(ad.get("Cpus")),
            memory_mb=_number(ad.get("Memory")),
            gpus=_number(ad.get("GPUs")),
            oses=_oses(ad.get(OFFERED_ATTR, ad.get(LIST_ATTR))),
            partitionable=bool(ad.get("PartitionableSlot")),
        )
        for ad in ads
        if ad.get("State", "Unclaimed") == "Unclaimed"
    ]


def room(
    slots: Sequence[FreeSlot], os_name: str | None, cpus: int, memory_mb: int, gpus: int
) -> int:
    """Jobs of this size and OS the pool could start at once."""
    return sum(slot.room_for(os_name, cpus, memory_mb, gpus) for slot in slots)


def describe_room(count: int, cpus: int, memory_mb: int, gpus: int) -> str:
    """The sentence the form shows beside a choice."""
    if count <= 0:
        return "none free now: your server will queue until a slot is free"
    size = f"{cpus} CPU{'s' if cpus != 1 else ''}, {format_size_mb(memory_mb)}"
    if gpus:
        size += f", {gpus} GPU{'s' if gpus != 1 else ''}"
    noun = "slot" if count == 1 else "slots"
    return f"{count} free {noun} now ({size} each): your server can start at once"


class PoolStatus:
    """One cached ``condor_status`` answer per interval, shared by all spawners of a hub."""

    _shared: ClassVar[dict[tuple[Any, ...], PoolStatus]] = {}

    def __init__(self, condor: Condor, interval: float) -> None:
        self.condor = condor
        self.interval = interval
        self._slots: list[FreeSlot] | None = None
        self._fetched = -float("inf")
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def shared(cls, condor: Condor, interval: float) -> PoolStatus:
        """The hub's one instance for this pool (tools, collector, environment)."""
        pool = condor.pool
        key = (pool.bin_dir, pool.collector, tuple(sorted(pool.environment.items())))
        status = cls._shared.get(key)
        if status is None:
            status = cls._shared[key] = cls(condor, interval)
        status.interval = interval
        return status

    @classmethod
    def forget_all(cls) -> None:
        """Drop every cached answer (tests)."""
        cls._shared.clear()

    def _the_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock

    async def free_slots(self) -> list[FreeSlot] | None:
        """The free slots, at most ``interval`` seconds old; None when the query failed."""
        async with self._the_lock():
            if time.monotonic() - self._fetched >= self.interval:
                self._slots = await self._query()
                self._fetched = time.monotonic()
            return self._slots

    async def _query(self) -> list[FreeSlot] | None:
        with contextlib.suppress(CondorError, ValueError, TypeError, AttributeError):
            ads = await self.condor.slot_ads(CONSTRAINT, ATTRIBUTES, timeout=QUERY_TIMEOUT)
            return parse_slots(ads)
        return None
