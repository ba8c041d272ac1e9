"""The spawn's progress events (JupyterHub's spawn page) and its timing line in the hub log.

The phases and their places on the bar (:class:`Phase`): ending an earlier
start's job 5, submitted 10, waiting in the queue 20, on a host 40, opening
the tunnel 50, tunnel open and the server starting 70 (rising while it
starts), the server answering 90; JupyterHub says "ready" at 100. No phase
stays silent longer than the watcher's poll interval: a phase that lasts says
so again (``again``), with the time it has taken, once it has been quiet for
an interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from enum import IntEnum
from typing import Any


class Phase(IntEnum):
    """Where a spawn is, as a place on JupyterHub's progress bar."""

    SETTLING = 5
    SUBMITTED = 10
    QUEUED = 20
    ON_HOST = 40
    OPENING = 50
    STARTING = 70
    ANSWERS = 90


class SpawnProgress:
    """The events of one spawn, streamed to the progress page as they come."""

    def __init__(
        self, log: logging.Logger | logging.LoggerAdapter[Any], name: str, interval: float
    ) -> None:
        self.log, self.name, self.interval = log, name, interval
        self.events: list[dict[str, Any]] = []
        self.done = True
        self.last_event = 0.0
        self._changed = asyncio.Event()

    def begin(self) -> None:
        self.events, self.done = [], False

    def end(self) -> None:
        self.done = True
        self._changed.set()

    def event(self, message: str, progress: int, again: bool = False) -> None:
        """One event; ``again`` (a phase that goes on) only after a quiet poll interval."""
        if again and time.monotonic() - self.last_event < max(self.interval, 1.0):
            return
        self.log.info("%s: %s", self.name, message)
        self.events.append({"progress": int(progress), "message": message})
        self.last_event = time.monotonic()
        self._changed.set()

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        seen = 0
        while True:
            while seen < len(self.events):
                yield self.events[seen]
                seen += 1
            if self.done and seen >= len(self.events):
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)

    def log_timings(self, job_id: str | None, times: dict[str, float]) -> None:
        """One line an admin (or a benchmark) can read: where the spawn's time went."""
        t = times
        listening = t.get("listening", t["ready"])  # a server that answered at once
        self.log.info(
            "%s: spawn timings for job %s: submit %.3f s, queue wait %.3f s, "
            "tunnel up %.3f s, server answering %.3f s, total %.3f s",
            self.name,
            job_id,
            t["submitted"] - t["start"],
            t["running"] - t["submitted"],
            listening - t["running"],
            t["ready"] - listening,
            t["ready"] - t["start"],
        )
