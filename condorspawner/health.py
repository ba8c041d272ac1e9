"""poll(): a running server stays reachable; a dead one is ended safely before it is reported."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from condorspawner.attach import AttachError
from condorspawner.condor import CondorError
from condorspawner.finish import JobNotFinished
from condorspawner.jobad import COMPLETED, HELD, IDLE, REMOVED, RUNNING, run_dated
from condorspawner.joblog import ended_in_log
from condorspawner.protocol import job_start
from condorspawner.standby import Standby


class HealthMixin:
    """JupyterHub calls stop() only while poll() says running: so poll ends jobs itself."""

    async def poll(self) -> int | None:
        """None while the server lives; else it has been ended safely first. Never raises."""
        try:
            return await self._poll()
        except Exception:
            self.log.exception("%s: poll failed; the server counts as running", self._log_name)
            return None

    async def _poll(self) -> int | None:
        if not self.job_id and not await self._adopt_submitted():
            return 0
        if not self.job_id:
            return None  # its schedd does not answer: a job may be there
        watcher = self._watcher()
        state = watcher.watch(self.job_id)
        if state.ad is None:
            await watcher.ensure_fresh(max_age=self.queue_poll_interval)
        ad = state.ad
        if state.missing_since is not None:
            return await self._settle_missing(time.monotonic() - state.missing_since)
        if ad is None:  # unknown: never "gone" on a failed or empty look
            await self._stand_in()
            return None
        status = ad.get("JobStatus")
        if status != RUNNING:
            await self._stand_down()  # the schedd answers: the stand-in's page is no longer true
        if state.gone or status in (REMOVED, COMPLETED):
            await self._close_tunnel()
            code = ad.get("ExitCode")
            return code if isinstance(code, int) and code != 0 else 1 if code is None else 0
        if status == HELD:
            return await self._end(f"HTCondor held job {self.job_id}: {ad.get('HoldReason')}")
        if status == IDLE:
            # the schedd's clock (ServerTime, from the same answer), not the hub's
            now = ad.get("ServerTime") or time.time()
            waited = now - (ad.get("EnteredCurrentStatus") or now)
            if waited > self.site.notebook.start_timeout:
                return await self._end(
                    f"job {self.job_id} was evicted and waited {waited:.0f} s to run again"
                )
            return None  # evicted: HTCondor runs it again, the next poll re-attaches
        if status == RUNNING:
            return await self._check_tunnel(ad)
        return None

    async def _stand_in(self) -> None:
        """No tunnel yet in this hub (it was restarted) and the schedd does not answer:
        the server's port answers for it, or JupyterHub's start-up check ends it."""
        if self._standby is not None or not self.local_port or self.server is None:
            return
        if self._attach().tunnel is not None:
            return  # a tunnel of this hub's: its failures have their own course
        await self._answer_for(Standby(self.job_id, self.schedd))
        self.log.warning(
            "%s: the schedd of job %s does not answer; 127.0.0.1:%s answers for the "
            "server until it does",
            self._log_name,
            self.job_id,
            self.local_port,
        )

    async def _answer_for(self, standby: Standby) -> None:
        """The server's port gives ``standby``'s page until a tunnel is there. The port is
        held from here on (:meth:`Attachment.hold`); when someone else had taken it while
        no hub ran, any free one (``get_url`` reports it, and the route follows): never
        leave the user's traffic to whoever took it."""
        await self._stand_down()
        attachment = self._attach()
        self.local_port = await attachment.hold()
        assert attachment.relay is not None
        attachment.relay.fallback = standby.answer
        self._standby = standby

    async def _stand_down(self) -> None:
        if self._standby is not None:
            standby, self._standby = self._standby, None
            if self._attachment is not None and self._attachment.relay is not None:
                self._attachment.relay.fallback = None
            await standby.close()

    async def _settle_missing(self, missing_for: float) -> int | None:
        """In neither queue nor history: the job's own event log, else a bound."""
        text = await self.files.tail(str(Path(self.submit_dir) / "notebook.log"), 400)
        ended = ended_in_log(text, self.job_id)
        if ended is None and missing_for < self.unknown_timeout:
            return None
        await self._close_tunnel()
        self.last_end = (
            f"job {self.job_id} {ended} (its event log says so)"
            if ended
            else f"job {self.job_id} is in neither the queue nor the history since "
            f"{missing_for:.0f} s; its server is taken as gone"
        )
        self.log.warning("%s: %s", self._log_name, self.last_end)
        return 1

    async def _adopt_submitted(self) -> bool:
        """A spawn saved (``spawn_id``) whose ``condor_submit`` answer never came, the hub
        stopped in between: find its job by the spawn's mark and follow it (issue 23.5).
        False: there is none (the submission never made it); True with no ``job_id``: the
        schedd does not answer, so one may be there."""
        if not self.spawn_id:
            return False
        try:
            job_id = await self._job_of_spawn()
        except CondorError as err:
            self.log.warning(
                "%s: looking for the job of spawn %s: %s", self._log_name, self.spawn_id, err
            )
            return True
        if job_id is None:
            return False
        self.log.info(
            "%s: job %s was submitted before the hub stopped; following it", self._log_name, job_id
        )
        self.job_id = job_id
        self._persist_state()
        return True

    async def _check_tunnel(self, ad: dict[str, Any]) -> int | None:
        """Running job: the tunnel must reach this run, or be made to (restart, eviction)."""
        attachment = self._attach()
        run = job_start(ad)
        if attachment.busy or not run_dated(ad):
            return None  # another call is attaching; the schedd has not dated the run yet
        if attachment.tunnel is not None and attachment.run == run:
            if attachment.healthy:
                return None
            self.log.warning(
                "%s: tunnel to job %s failed (%s); attaching again",
                self._log_name,
                self.job_id,
                attachment.failure,
            )
        before = attachment.local_port
        try:
            self.local_port = await attachment.open(run)
        except AttachError as err:
            return await self._without_tunnel(str(err))
        await self._stand_down()
        self._tunnel_lost_at = None
        self.log.info(
            "%s: tunnel to job %s (run %s) on 127.0.0.1:%s",
            self._log_name,
            self.job_id,
            run,
            self.local_port,
        )
        if before and self.local_port != before:
            await self._move_route()
        return None

    async def _without_tunnel(self, why: str) -> int | None:
        """The job runs but no tunnel reaches it (a CCB hiccup, a slow sshd in the job, a
        partitioned execute point): the job and its kernels are kept and the port gives a
        page, for ``notebook.reattach_timeout``; only then is the job ended, saying why."""
        now = time.monotonic()
        if self._tunnel_lost_at is None:
            self._tunnel_lost_at = now
        lost_for = now - self._tunnel_lost_at
        limit = self.site.notebook.reattach_timeout
        if lost_for >= limit:
            return await self._end(f"{why} (no tunnel for {lost_for:.0f} s)")
        if self._standby is None or not self._standby.tunnel:
            await self._answer_for(Standby(self.job_id, self.schedd, tunnel=True))
        self.log.warning(
            "%s: %s; the job is kept, its port answers with a page (%.0f of %d s)",
            self._log_name,
            why,
            lost_for,
            limit,
        )
        return None

    async def _move_route(self) -> None:
        """The session had to take another local port: the proxy's route follows it."""
        if self.server is None:
            return
        self.server.port = self.local_port
        self._commit()
        proxy = self.user.settings.get("proxy")
        if proxy is None or self.pending:  # JupyterHub's start-up check routes it itself
            self.log.info("%s: server moved to port %s", self._log_name, self.local_port)
        else:
            await proxy.add_user(self.user, self.name)
            self.log.info("%s: proxy route moved to port %s", self._log_name, self.local_port)

    async def _tunnel_gave_up(self, why: str) -> None:
        """The tunnel's supervisor gave up: until the next poll attaches again, its held
        port says so (the route stays: no other account can have the port)."""
        if self._tunnel_lost_at is None:
            self._tunnel_lost_at = time.monotonic()
        await self._answer_for(Standby(self.job_id, self.schedd, tunnel=True))
        self.log.warning("%s: tunnel gave up (%s); reconnecting", self._log_name, why)

    async def _end(self, why: str) -> int | None:
        """poll() found the server dead: end its job safely first, then report it (1)."""
        self.log.warning("%s: %s; ending the job", self._log_name, why)
        await self._close_tunnel()
        try:
            await self._finish(why)
        except JobNotFinished as err:
            self.log.error("%s: %s", self._log_name, err)
            return None  # still ours, still followed: the next poll tries again
        self._forget_job()  # ended by this hub: no later poll may take it for unknown
        self.last_end = why
        self._persist_state()
        return 1
