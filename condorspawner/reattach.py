"""Re-attaching sessions a few at a time per schedd (issue 27).

After a hub restart every running session's poll wants its tunnel at once, and
each tunnel is a ``condor_ssh_to_job``: a ``GET_JOB_CONNECT_INFO`` at the schedd
and an sshd started by the job's starter. At most ``notebook.reattach_concurrency``
sessions of one schedd attach at a time. A poll that finds its schedd's slots
taken does not wait (JupyterHub's start-up check would stop the server for being
late): its port gives the "being re-established" page, and the attach runs in the
background when a slot frees; the next poll learns how it went.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# per event loop (a test may run several), per schedd ("" the default one)
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def slots(schedd: str | None, limit: int) -> asyncio.Semaphore:
    """The re-attach slots of this hub for ``schedd`` (``limit`` of them, as the first
    caller saw it: a hub reads the site file's number once)."""
    per_schedd = _SLOTS.setdefault(asyncio.get_running_loop(), {})
    if (schedd or "") not in per_schedd:
        per_schedd[schedd or ""] = asyncio.Semaphore(limit)
    return per_schedd[schedd or ""]


Attach = Callable[[], Awaitable[str | None]]  # None: attached; else why not


@dataclass
class Reattach:
    """One session's attach: at once when its schedd has a slot, else in the background."""

    task: asyncio.Task[str | None] | None = None

    @property
    def pending(self) -> bool:
        return self.task is not None and not self.task.done()

    def outcome(self) -> str | None:
        """Why a background attach that has ended failed (told once); None otherwise."""
        if self.task is None or not self.task.done():
            return None
        task, self.task = self.task, None
        if task.cancelled():
            return None
        error = task.exception()
        return f"{type(error).__name__}: {error}" if error is not None else task.result()

    async def now_or_later(
        self, schedd: str | None, limit: int, attach: Attach, meanwhile: Callable[[], Awaitable]
    ) -> str | None:
        """Attach now if the schedd has a slot: why it failed, or None. Else ``meanwhile``
        (the page), then the attach in its turn, in the background: None."""
        slot = slots(schedd, limit)
        if not slot.locked():
            return await self._in_turn(slot, attach)
        await meanwhile()
        self.task = asyncio.create_task(self._in_turn(slot, attach))
        return None

    @staticmethod
    async def _in_turn(slot: asyncio.Semaphore, attach: Attach) -> str | None:
        async with slot:
            return await attach()

    async def cancel(self) -> None:
        """The session ends (stop, or its job is gone): no attach may follow."""
        if self.task is not None:
            task, self.task = self.task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
