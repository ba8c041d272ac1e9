"""The spawn's progress events (the spawn page) and its timing line in the hub log.

The phases and their places on the bar: submitted 10, waiting in the queue 20,
running on a host 40, opening the tunnel 50, tunnel open and the server
starting 70 (rising while it starts), the server answering 90; JupyterHub
says "ready" at 100. No phase stays silent longer than the watcher's poll
interval: a phase that lasts says so again, with the time it has taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

SUBMITTED, QUEUED, RUNNING, OPENING, STARTING, ANSWERS = 10, 20, 40, 50, 70, 90


class ProgressMixin:
    """Events a spawn emits, streamed to the progress page."""

    def _event(self, message: str, progress: int) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._events.append({"progress": progress, "message": message})
        self._last_event = time.monotonic()
        self._events_changed.set()

    def _still(self, message: str, progress: int) -> None:
        """Say again that a phase goes on, once it has been quiet for a poll interval."""
        quiet = time.monotonic() - self._last_event
        if quiet >= max(self.queue_poll_interval, 1.0):
            self._event(message, progress)

    def _since(self, key: str) -> str:
        """Whole seconds since a point of the spawn's timings (e.g. "12 s")."""
        return f"{time.monotonic() - self._timings.get(key, time.monotonic()):.0f} s"

    async def _server_starting(self, job_id: str) -> None:
        """While the server starts behind an open tunnel: a word every poll interval."""
        self._timings["listening"] = time.monotonic()
        self._event(
            f"Tunnel open to job {job_id}; the notebook server is starting "
            "(a first start in a fresh environment can take a minute)",
            STARTING,
        )
        for step in range(1, 15):
            await asyncio.sleep(max(self.queue_poll_interval, 1.0))
            self._still(
                f"The notebook server in job {job_id} is still starting "
                f"({self._since('listening')})",
                STARTING + step,
            )

    async def progress(self):
        seen = 0
        while True:
            while seen < len(self._events):
                yield self._events[seen]
                seen += 1
            if self._spawn_done and seen >= len(self._events):
                return
            self._events_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events_changed.wait(), 1.0)

    def _log_timings(self) -> None:
        """One line an admin (or a benchmark) can read: where the spawn's time went."""
        t = self._timings
        self.log.info(
            "%s: spawn timings for job %s: submit %.3f s, queue wait %.3f s, "
            "start in the job and tunnel %.3f s, total %.3f s",
            self._log_name,
            self.job_id,
            t["submitted"] - t["start"],
            t["running"] - t["submitted"],
            t["ready"] - t["running"],
            t["ready"] - t["start"],
        )
