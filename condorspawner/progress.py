"""The spawn's progress events (the spawn page) and its timing line in the hub log."""

from __future__ import annotations

import asyncio
import contextlib


class ProgressMixin:
    """Events a spawn emits, streamed to the progress page."""

    def _event(self, message: str, progress: int) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._events.append({"progress": progress, "message": message})
        self._events_changed.set()

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
