"""CondorSpawner: each notebook server is an HTCondor job, reached through condor_ssh_to_job.

This module is the JupyterHub adapter of the notebook job's lifecycle
(:class:`~condorspawner.notebook_job.NotebookJob`, which ``condorsub lab``
shares): the saved state, the progress page, the options, the proxy route and
the standby page, against the contract JupyterHub's own code defines
(``User.stop`` calls ``stop()`` only when ``poll()`` says the server runs, then
clears the state; ``User.spawn`` saves the state only after ``start()``
returns). The traits are in :mod:`~condorspawner.spawner_config`; what a job's
state means for ``poll`` in :mod:`~condorspawner.health`; how poll keeps a running
job's tunnel (and its page meanwhile) in :mod:`~condorspawner.session_tunnel`.
"""

from __future__ import annotations

import contextlib
import pwd
import time
import uuid
from typing import Any

from condorspawner.accounts import AccountRefused, check_account
from condorspawner.attach import TunnelSettings, hub_address
from condorspawner.condor import Condor
from condorspawner.errors import SpawnError
from condorspawner.finish import JobNotFinished
from condorspawner.health import Case, gone_why, judge
from condorspawner.jobfiles import JobPaths, job_site_text, notebook_job, write_job_files
from condorspawner.leftovers import adopt_submitted, settle_leftovers
from condorspawner.notebook_job import JobRecord, NotebookJob
from condorspawner.progress import SpawnProgress
from condorspawner.protocol import JobSecret
from condorspawner.request import JobRequest, RequestError
from condorspawner.session_tunnel import SessionTunnel
from condorspawner.site import Site, cached_site
from condorspawner.spawner_config import SpawnerConfig
from condorspawner.userfiles import UserFiles, UserFilesError


class CondorSpawner(SpawnerConfig):
    """Run each notebook server as an HTCondor job in the container OS the user chose."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site: Site = cached_site(self.site_file)  # a wrong site file fails here, at once
        self.record = JobRecord()
        self.last_end: str | None = None
        self._job: NotebookJob | None = None
        self._tunnel: SessionTunnel | None = None
        self.spawn_progress = SpawnProgress(self.log, self._log_name, self.queue_poll_interval)

    # --- collaborators --------------------------------------------------------------------

    @property
    def run_as(self) -> str | None:
        return self.user.name if self.site.pool.run_as else None

    @property
    def files(self) -> UserFiles:
        """File operations in the user's directories, as the user."""
        prefix = Condor(self.site.pool).user_prefix(self.run_as) if self.run_as else []
        return UserFiles(prefix, self.job_python)

    @property
    def job(self) -> NotebookJob:
        """This server's notebook job (its settings as they were at the last start)."""
        if self._job is None:
            self._job = NotebookJob(
                self.site,
                self.record,
                **self._job_settings(),
                on_event=self.spawn_progress.event,
                persist=lambda: self._persist_state(),
                log=self.log,
            )
        return self._job

    @property
    def tunnel(self) -> SessionTunnel:
        """The running job's tunnel as poll keeps it, and its port's page meanwhile."""
        if self._tunnel is None:
            self._tunnel = SessionTunnel(
                self.job,
                self.record,
                notebook=lambda: self.site.notebook,
                end=lambda why: self._end(why),
                move_route=self._move_route,
                log=self.log,
                name=self._log_name,
            )
        return self._tunnel

    def _job_settings(self) -> dict[str, Any]:
        """The traits the job runs with, read now: JupyterHub's group overrides and
        ``pre_spawn_hook`` may change them up to the start."""
        tunnel_mode = self.hub is not None and self.site.notebook.hub_api == "tunnel"
        return {
            "hub_id": self.hub_id,
            "user": self.user.name if self.user else "",
            "server": self.name or "",
            "run_as": self.run_as,
            "files": self.files,
            "tunnel": TunnelSettings(
                hub_api=hub_address(self.hub.api_url) if tunnel_mode else None,
                max_restarts=self.tunnel_max_restarts,
                ready_timeout=float(self.http_timeout),
                on_give_up=lambda why: self.tunnel.gave_up(why),
            ),
            "stop_timeout": self.stop_timeout,
            "intervals": (self.queue_poll_interval, self.queue_poll_interval_pending),
            "name": self._log_name,
        }

    def _configured_job(self) -> NotebookJob:
        """The job, with the traits as they are now (``start`` calls it first)."""
        job = self.job
        for name, value in self._job_settings().items():
            setattr(job, name, value)
        self.spawn_progress.interval = self.queue_poll_interval
        return job

    def _account(self) -> pwd.struct_passwd | None:
        """The user's Unix account, checked (:class:`AccountRefused`), when the hub acts as
        each user; None when tools run as the hub's own account."""
        if not self.site.pool.run_as:
            return None
        return check_account(self.user.name, min_uid=self.min_uid, denied=self.denied_users)

    def _paths(self) -> JobPaths:
        """The user's account (checked) and this server's directories."""
        account = self._account()
        return JobPaths.for_server(
            submit_root=self.submit_root,
            work_directory=self.work_directory or self.site.notebook.work_directory,
            user=self.user.name,
            home=account.pw_dir if account else None,
            server=self.name or "",
        )

    # --- state ----------------------------------------------------------------------------

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.record.load(state)
        self.last_end = state.get("last_end")

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(self.record.saved())
        if self.last_end:
            state["last_end"] = self.last_end
        return state

    def clear_state(self) -> None:
        """Forget the job, unless it could not be ended safely (then it is kept, held)."""
        super().clear_state()
        if not self.record.keep_job:
            self.record.forget()

    def _persist_state(self) -> None:
        """Save the state now (JupyterHub saves it only after start() returns)."""
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is not None:
            orm_spawner.state = self.get_state()
            self._commit()

    def _commit(self) -> None:
        """Commit the hub's database session our ORM objects belong to (not Spawner.db,
        which JupyterHub deprecates)."""
        from sqlalchemy.orm import object_session

        orm_spawner = getattr(self, "orm_spawner", None)
        session = object_session(orm_spawner) if orm_spawner is not None else None
        if session is not None:
            session.commit()

    # --- start ----------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        progress = self.spawn_progress
        progress.begin()
        if self.last_end:
            progress.event(f"Your previous server ended: {self.last_end}", 0)
            self.last_end = None
        started = time.monotonic()
        try:
            try:
                job = self._configured_job()
                request = self.job_request()
                paths = self._paths()
            except (RequestError, AccountRefused, ValueError) as err:  # ValueError: a user name
                raise SpawnError(f"Cannot start a server: {err}") from None
            job.times = {"start": started}
            await settle_leftovers(job)
            await self._submit(request, paths)
            ad = await job.follow_to_run(pending=True)
            assert ad is not None  # neither a stop event nor a task to end it
            if await job.connect(ad) is None:
                raise SpawnError(f"Opening the tunnel to job {self.record.job_id} was cancelled")
            progress.log_timings(self.record.job_id, job.times)
        except BaseException:
            await self._abandon()
            raise
        finally:
            progress.end()
            if self._job is not None:
                self._job.settle()
        return "127.0.0.1", self.record.local_port

    async def _submit(self, request: JobRequest, paths: JobPaths) -> None:
        """The job's files (its private file with the hub's token), then the submission."""
        job, site = self.job, self.site
        meeting = job.new_spawn(paths.submit_dir, uuid.uuid4().hex)
        await job.choose_schedd()
        secret = JobSecret(
            env=self._job_environment(),
            rendezvous=meeting,
            site=job_site_text(site),
            hub_api=site.notebook.hub_api,
            token=await job.token(request.runtime_s) if site.notebook.submit_token else None,
            shared_account=site.notebook.shared_job_accounts,
        )
        try:
            rendered = notebook_job(
                site,
                request,
                paths,
                python=self.job_python,
                hub_id=self.hub_id,
                user=self.user.name,
                server=self.name or "",
                spawn=self.record.spawn_id,
                launcher_args=self.launcher_args,
            )
        except RequestError as err:
            raise SpawnError(f"Invalid server options: {err}") from None
        try:
            await write_job_files(self.files, paths, rendered, secret.dumps())
        except UserFilesError as err:
            raise SpawnError(f"Cannot write the job's files in your directories: {err}") from None
        await job.submit(paths.submit_file, request.summary())

    def _job_environment(self) -> dict[str, str]:
        """What the notebook needs from the hub (token included): into the private file."""
        env = self.get_env()
        keep = set(self.environment)
        return {k: v for k, v in env.items() if k.startswith(("JUPYTERHUB_", "JPY_")) or k in keep}

    async def _abandon(self) -> None:
        """A spawn that failed: no tunnel, no job left behind (its files safe first)."""
        if self._job is None:
            return  # it failed before it had a job
        await self._close_tunnel()
        if self.record.job_id:
            with contextlib.suppress(JobNotFinished):
                await self.job.finish("spawn failed")

    async def progress(self):
        async for event in self.spawn_progress.stream():
            yield event

    async def get_url(self) -> str:
        """After a re-attach the tunnel may listen on another local port."""
        if self.server is not None and self.record.local_port:
            self.server.ip = "127.0.0.1"
            self.server.port = self.record.local_port
        return await super().get_url()

    # --- poll -----------------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the server lives; else it has been ended safely first. Never raises."""
        try:
            return await self._poll()
        except Exception:
            self.log.exception("%s: poll failed; the server counts as running", self._log_name)
            return None

    async def _poll(self) -> int | None:
        record = self.record
        if not record.job_id and not record.spawn_id:
            return 0  # no job, and no spawn that may have submitted one
        job = self.job
        if not record.job_id and not await adopt_submitted(job):
            return 0
        if not record.job_id:
            return None  # its schedd does not answer: a job may be there
        watcher = job.watcher()
        state = watcher.watch(record.job_id)
        if state.ad is None:
            await watcher.ensure_fresh(max_age=self.queue_poll_interval)
        verdict = judge(state, record.job_id, start_timeout=self.site.notebook.start_timeout)
        if verdict.case is Case.MISSING:
            return await self._settle_missing(time.monotonic() - state.missing_since)
        if verdict.case is Case.UNKNOWN:  # never "gone" on a failed or empty look
            if self.server is not None:
                await self.tunnel.stand_in()
            return None
        if verdict.case is not Case.RUNNING:
            await self.tunnel.stand_down()  # the schedd answers: the page is no longer true
        if verdict.case is Case.GONE:
            await self._close_tunnel()
            return verdict.code
        if verdict.case is Case.END:
            return await self._end(verdict.why)
        if verdict.case is Case.RUNNING:
            return await self.tunnel.check(state.ad)
        return None  # evicted or suspended: HTCondor runs it again, a later poll re-attaches

    async def _settle_missing(self, missing_for: float) -> int | None:
        job_id = self.record.job_id
        why = gone_why(await self.job.event_log(), job_id, missing_for, self.unknown_timeout)
        if why is None:
            return None
        await self._close_tunnel()
        self.last_end = why
        self.log.warning("%s: %s", self._log_name, why)
        return 1

    async def _end(self, why: str) -> int | None:
        """poll() found the server dead: end its job safely first, then report it (1)."""
        self.log.warning("%s: %s; ending the job", self._log_name, why)
        await self._close_tunnel()
        try:
            await self.job.finish(why)
        except JobNotFinished as err:
            self.log.error("%s: %s", self._log_name, err)
            return None  # still ours, still followed: the next poll tries again
        self.record.forget()  # ended by this hub: no later poll may take it for unknown
        self.last_end = why
        self._persist_state()
        return 1

    # --- stop -----------------------------------------------------------------------------

    async def _close_tunnel(self) -> None:
        await self.tunnel.close()

    async def _move_route(self) -> None:
        """The session had to take another local port: the proxy's route follows it."""
        if self.server is None:
            return
        self.server.port = self.record.local_port
        self._commit()
        proxy = self.user.settings.get("proxy")
        if proxy is None or self.pending:  # JupyterHub's start-up check routes it itself
            self.log.info("%s: server moved to port %s", self._log_name, self.record.local_port)
        else:
            await proxy.add_user(self.user, self.name)
            self.log.info(
                "%s: proxy route moved to port %s", self._log_name, self.record.local_port
            )

    async def stop(self, now: bool = False) -> None:
        await self._close_tunnel()
        if not self.record.job_id:
            return
        try:
            await self.job.finish("stopped by JupyterHub")
        except JobNotFinished as err:
            self.record.keep_job = True  # User.stop clears the state next: keep the job in it
            self.log.error("%s: stop failed: %s", self._log_name, err)
            raise SpawnError(str(err)) from None
        self.record.forget()

    async def delete_forever(self) -> None:
        """The server is deleted for good: what the hub kept for it goes too."""
        with contextlib.suppress(AccountRefused, UserFilesError, SpawnError):
            await self.files.remove(str(self._paths().submit_dir))


__all__ = ["CondorSpawner", "SpawnError"]
