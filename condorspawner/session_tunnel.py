"""A running session's tunnel as poll keeps it, and what its port says meanwhile.

The session's port ``127.0.0.1:L`` is held by the hub from the first attach on. While
the job's schedd does not answer, or no tunnel reaches the job, it gives the standby
page (:mod:`~condorspawner.standby`), so JupyterHub's start-up check and the user see
why instead of an error; a tunnel is made in its schedd's turn
(:mod:`~condorspawner.reattach`); a job no tunnel reaches for
``notebook.reattach_timeout`` is ended (``end``); a session that had to take another
port has its proxy route moved (``move_route``). The spawner calls it with all of that.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from condorspawner.attach import AttachError
from condorspawner.jobad import run_dated
from condorspawner.notebook_job import JobRecord, NotebookJob
from condorspawner.protocol import job_start
from condorspawner.reattach import Reattach
from condorspawner.site import Notebook
from condorspawner.standby import Standby, StandbyPort


@dataclass
class SessionTunnel:
    """One server's tunnel upkeep (``notebook`` is read at each use: the site may change)."""

    job: NotebookJob
    record: JobRecord
    notebook: Callable[[], Notebook]
    end: Callable[[str], Awaitable[int | None]]  # end the job safely, saying why
    move_route: Callable[[], Awaitable[None]]
    log: logging.Logger | logging.LoggerAdapter
    name: str
    standby: StandbyPort = field(default_factory=StandbyPort)
    reattach: Reattach = field(default_factory=Reattach)

    async def stand_in(self) -> None:
        """No tunnel yet in this hub (it was restarted) and the schedd does not answer:
        the server's port answers for it, or JupyterHub's start-up check ends it."""
        if self.standby.page is not None or not self.record.local_port:
            return
        if self.job.attachment.tunnel is not None:
            return  # a tunnel of this hub's: its failures have their own course
        await self._show(tunnel=False)
        self.log.warning(
            "%s: the schedd of job %s does not answer; 127.0.0.1:%s answers for the "
            "server until it does",
            self.name,
            self.record.job_id,
            self.record.local_port,
        )

    async def _show(self, tunnel: bool) -> None:
        page = Standby(self.record.job_id, self.record.schedd, tunnel=tunnel)
        self.record.local_port = await self.standby.show(self.job.attachment, page)

    async def stand_down(self) -> None:
        await self.standby.hide(self.job.tunnel_opened)

    async def check(self, ad: dict[str, Any]) -> int | None:
        """Running job: the tunnel must reach this run, or be made to (restart, eviction),
        in the schedd's turn."""
        job = self.job
        attachment, run = job.attachment, job_start(ad)
        if attachment.busy or self.reattach.pending or not run_dated(ad):
            return None  # another call is attaching; the schedd has not dated the run yet
        failed = self.reattach.outcome()  # of an attach in the background
        if failed is None and job.reaches(ad):
            return None
        if failed is None:
            if attachment.tunnel is not None and attachment.run == run:
                self.log.warning(
                    "%s: tunnel to job %s failed (%s); attaching again",
                    self.name,
                    self.record.job_id,
                    attachment.failure,
                )
            failed = await self.reattach.now_or_later(
                self.record.schedd,
                self.notebook().reattach_concurrency,
                lambda: self._attach(run),
                self._await_turn,
            )
        return None if failed is None else await self._without_tunnel(failed)

    async def _await_turn(self) -> None:
        await self._show(tunnel=True)
        self.log.info("%s: re-attaches when its schedd has a slot", self.name)

    async def _attach(self, run: int) -> str | None:
        """A tunnel to this run; None, or why there is none."""
        attachment = self.job.attachment
        before = attachment.local_port
        try:
            self.record.local_port = await attachment.open(run)
        except AttachError as err:
            return str(err)
        await self.stand_down()
        self.standby.found()
        self.log.info(
            "%s: tunnel to job %s (run %s) on 127.0.0.1:%s",
            self.name,
            self.record.job_id,
            run,
            self.record.local_port,
        )
        if before and self.record.local_port != before:
            await self.move_route()
        return None

    async def _without_tunnel(self, why: str) -> int | None:
        """The job runs but no tunnel reaches it (a CCB hiccup, a slow sshd in the job, a
        partitioned execute point): the job and its kernels are kept and the port gives a
        page, for ``notebook.reattach_timeout``; only then is the job ended, saying why."""
        lost_for = self.standby.lost_for()
        limit = self.notebook().reattach_timeout
        if lost_for >= limit:
            return await self.end(f"{why} (no tunnel for {lost_for:.0f} s)")
        if self.standby.page is None or not self.standby.page.tunnel:
            await self._show(tunnel=True)
        self.log.warning(
            "%s: %s; the job is kept, its port answers with a page (%.0f of %d s)",
            self.name,
            why,
            lost_for,
            limit,
        )
        return None

    async def gave_up(self, why: str) -> None:
        """The tunnel's supervisor gave up: until the next poll attaches again, its held
        port says so (the route stays: no other account can have the port)."""
        self.standby.lost_for()  # the clock starts, if it has not
        await self._show(tunnel=True)
        self.log.warning("%s: tunnel gave up (%s); reconnecting", self.name, why)

    async def close(self) -> None:
        """The session's tunnel is over: no attach waits for its turn, no page, no tunnel."""
        await self.reattach.cancel()
        await self.stand_down()
        await self.job.close_tunnel()
