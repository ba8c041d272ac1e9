"""CondorSpawner: each notebook server is an HTCondor job, reached through condor_ssh_to_job.

This module is the JupyterHub adapter: the spawner's state, start and stop,
against the contract JupyterHub's own code defines (``User.stop`` calls
``stop()`` only when ``poll()`` says the server runs, then clears the state).
Each behaviour lives in a module of its own: the traits
(:mod:`~condorspawner.spawner_config`), the options form
(:mod:`~condorspawner.options`), progress events
(:mod:`~condorspawner.progress`), the submission
(:mod:`~condorspawner.submission`), ``poll``
(:mod:`~condorspawner.health`), the user's files
(:mod:`~condorspawner.userfiles`), the hub–job protocol
(:mod:`~condorspawner.protocol`), the tunnel (:mod:`~condorspawner.attach`),
ending a job without losing its files (:mod:`~condorspawner.finish`), the
shared queue watcher (:mod:`~condorspawner.watcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import pwd
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner
from traitlets import default

from condorspawner.accounts import AccountRefused, check_account
from condorspawner.attach import AttachError, Attachment
from condorspawner.condor import Condor
from condorspawner.errors import SpawnError
from condorspawner.finish import JobNotFinished, finish_job
from condorspawner.health import HealthMixin
from condorspawner.jobad import RUNNING, run_dated
from condorspawner.jobfiles import JobPaths
from condorspawner.options import OptionsMixin
from condorspawner.progress import ANSWERS, OPENING, QUEUED, ProgressMixin
from condorspawner.progress import RUNNING as RUNNING_PHASE
from condorspawner.protocol import (
    SECRET_FILE,
    Rendezvous,
    job_start,
)
from condorspawner.request import RequestError
from condorspawner.site import Site, cached_site
from condorspawner.spawner_config import SpawnerConfig
from condorspawner.standby import Standby
from condorspawner.submission import SubmissionMixin
from condorspawner.userfiles import UserFiles, UserFilesError
from condorspawner.watcher import (
    JobEnded,
    JobHeld,
    QueueWatcher,
    StillQueued,
    follow_job,
)

# "schedd": the job's access point, for life (every command names it with -name);
# "keep_job": a stop could not end the job safely, so it is kept (held) across a hub
# restart and the next start must end it first
STATE_KEYS = ("job_id", "submit_dir", "local_port", "nonce", "spawn_id", "schedd", "keep_job")


class CondorSpawner(
    OptionsMixin, ProgressMixin, SubmissionMixin, HealthMixin, SpawnerConfig, Spawner
):
    """Run each notebook server as an HTCondor job in the container OS the user chose."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site: Site = cached_site(self.site_file)  # a wrong site file fails here, at once
        self._forget_job()
        self.last_end: str | None = None
        self._attachment: Attachment | None = None
        self._standby: Standby | None = None  # answers for the server while its schedd does not
        self._tunnel_lost_at: float | None = None  # monotonic; a running job unreachable
        self._events: list[dict[str, Any]] = []
        self._events_changed = asyncio.Event()
        self._last_event = 0.0
        self._spawn_done = True

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        for key in STATE_KEYS:
            setattr(self, key, state.get(key))
        self.last_end = state.get("last_end")

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        for key in STATE_KEYS:
            if getattr(self, key, None) is not None:
                state[key] = getattr(self, key)
        if getattr(self, "last_end", None):
            state["last_end"] = self.last_end
        return state

    def clear_state(self) -> None:
        """Forget the job, unless it could not be ended safely (then it is kept, held)."""
        super().clear_state()
        if not getattr(self, "keep_job", False):
            self._forget_job()

    def _forget_job(self) -> None:
        for key in STATE_KEYS:
            setattr(self, key, None)
        self.keep_job = False

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

    @property
    def condor(self) -> Condor:
        """The tools aimed at this server's job's schedd (the site's, before a submission)."""
        return Condor(self.site.pool).for_schedd(getattr(self, "schedd", None))

    @property
    def run_as(self) -> str | None:
        return self.user.name if self.site.pool.run_as else None

    @property
    def files(self) -> UserFiles:
        """File operations in the user's directories, as the user."""
        prefix = self.condor.user_prefix(self.run_as) if self.run_as else []
        return UserFiles(prefix, self.job_python)

    def _account(self) -> pwd.struct_passwd | None:
        """The user's Unix account, checked (:class:`AccountRefused`), when the hub acts as
        each user; None when tools run as the hub's own account."""
        if not self.site.pool.run_as:
            return None
        return check_account(self.user.name, min_uid=self.min_uid, denied=self.denied_users)

    def _paths(self) -> JobPaths:
        """The user's account (checked) and this server's directories."""
        account = self._account()
        home = account.pw_dir if account else None
        return JobPaths.for_server(
            submit_root=self.submit_root,
            work_directory=self.work_directory or self.site.notebook.work_directory,
            user=self.user.name,
            home=home,
            server=self.name or "",
        )

    def _hub_api(self) -> tuple[str, int]:
        url = urlparse(self.hub.api_url)
        host = url.hostname or "127.0.0.1"
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 (a bind-all address, not a bind)
            host = "127.0.0.1"
        return host, url.port or (443 if url.scheme == "https" else 80)

    @default("options_form")
    def _default_options_form(self) -> Any:
        return type(self).render_options_form  # called as options_form(spawner)

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        return type(self)._validate_user_options

    def _watcher(self) -> QueueWatcher:
        return QueueWatcher.shared(
            self.condor,
            self.hub_id,
            interval=self.queue_poll_interval,
            fast_interval=self.queue_poll_interval_pending,
        )

    async def start(self) -> tuple[str, int]:
        self._events, self._spawn_done = [], False
        if self.last_end:
            self._event(f"Your previous server ended: {self.last_end}", 0)
            self.last_end = None
        self._timings = {"start": time.monotonic()}
        try:
            try:
                request = self.job_request()
                paths = self._paths()
            except (RequestError, AccountRefused) as err:
                raise SpawnError(f"Cannot start a server: {err}") from None
            await self._settle_leftovers()
            await self._submit(request, paths)
            self._timings["submitted"] = time.monotonic()
            await self._follow(lambda ad: ad.get("JobStatus") == RUNNING and run_dated(ad))
            self._timings["running"] = time.monotonic()
            await self._connect()
            self._timings["ready"] = time.monotonic()
            self._log_timings()
        except BaseException:
            await self._abandon()
            raise
        finally:
            self._spawn_done = True
            self._events_changed.set()
            if self.job_id:
                self._watcher().settle(self.job_id)
        return "127.0.0.1", self.local_port

    async def _follow(self, done: Any) -> dict[str, Any]:
        """Follow the spawn's job until ``done(ad)``: queue reasons, hold, end, start timeout."""
        state = self._watcher().watch(self.job_id, pending=True)

        def idle(reason: str, new: bool) -> None:
            if new:
                self._event(f"Job {self.job_id} is queued: {reason}", QUEUED)
            else:
                waited = self._since("submitted")
                self._still(f"Job {self.job_id} is still queued ({waited}): {reason}", QUEUED)

        def running(ad: dict[str, Any]) -> None:
            host = ad.get("RemoteHost", "an execute point")
            self._event(f"Job {self.job_id} running on {host}", RUNNING_PHASE)

        limit = self.site.notebook.start_timeout
        try:
            ad = await follow_job(
                state, done, start_timeout=limit, on_idle=idle, on_running=running
            )
        except JobHeld as err:
            raise SpawnError(f"HTCondor held job {self.job_id}: {err.reason}") from None
        except JobEnded as err:
            raise SpawnError(await self._ended_message(err.ad)) from None
        except StillQueued as err:
            raise SpawnError(
                f"Job {self.job_id} was still waiting in the queue after {limit} s "
                f"({err.reason}); it was removed."
            ) from None
        assert ad is not None  # neither a stop event nor a task to end it
        return ad

    def _attach(self) -> Attachment:
        if self._attachment is None or self._attachment.job_id != self.job_id:
            self._attachment = Attachment(
                job_id=self.job_id,
                rendezvous=Rendezvous(self.nonce),
                program=self.condor.command("condor_ssh_to_job", [], self.run_as),
                hub_api=self._hub_api() if self.site.notebook.hub_api == "tunnel" else None,
                env=dict(self.site.pool.environment),
                owners=self._tunnel_owners(),
                ssh_uid=self._account_uid(),
                local_port=self.local_port or 0,
                max_restarts=self.tunnel_max_restarts,
                ready_timeout=float(self.http_timeout),
                on_give_up=self._tunnel_gave_up,
                config_writer=self._write_tunnel_config,
            )
        return self._attachment

    async def _write_tunnel_config(self, text: str) -> str:
        """The tunnel's forwards, in a 0600 file of the user's (written as the user)."""
        path = str(Path(self.submit_dir) / "tunnel.ssh_config")
        await self.files.prepare(dirs=[], files=[(path, text, 0o600)])
        return path

    def _account_uid(self) -> int | None:
        """The uid the server's tools run as through run-as (None: the hub's own)."""
        if not self.run_as:
            return None
        try:
            return pwd.getpwnam(self.run_as).pw_uid
        except KeyError:
            return None

    def _tunnel_owners(self) -> set[int]:
        """Who runs this server's tunnel processes: the hub, and the user through run-as."""
        import os

        uid = self._account_uid()
        return {os.getuid()} | ({uid} if uid is not None else set())

    async def _connect(self) -> None:
        """Open the tunnel while the server starts in the job; fail fast if the job ends."""
        self._event(
            f"Opening the tunnel to job {self.job_id} (condor_ssh_to_job); "
            "the notebook server is starting in the job",
            OPENING,
        )
        ad = self._watcher().jobs[self.job_id].ad or {}
        told: list[asyncio.Task[None]] = []

        def listening() -> None:
            told.append(asyncio.ensure_future(self._server_starting(self.job_id)))

        opening = asyncio.create_task(self._attach().open(job_start(ad), listening))
        watching = asyncio.create_task(self._follow(lambda ad: False))
        try:
            await asyncio.wait({opening, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (opening, watching, *told):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        if watching.done() and not watching.cancelled():
            watching.result()  # raises what the job's fate says (held, ended, ...)
        try:
            self.local_port = opening.result()
        except AttachError as err:
            raise SpawnError(str(err)) from None
        self._persist_state()
        self._event(
            f"The notebook server answers through the tunnel "
            f"(127.0.0.1:{self.local_port} to job {self.job_id}, {self._since('running')} "
            "after the job started)",
            ANSWERS,
        )

    async def _ended_message(self, ad: dict[str, Any]) -> str:
        code = ad.get("ExitCode")
        how = (
            f"exit code {code}"
            if code is not None
            else ad.get("RemoveReason") or f"status {ad.get('JobStatus')}"
        )
        message = f"Job {self.job_id} ended before the notebook was ready ({how})."
        tail = await self.files.tail(str(Path(self.submit_dir) / "notebook.err"))
        return f"{message} Its error output ends with:\n{tail}" if tail else message

    async def _abandon(self) -> None:
        """A spawn that failed: no tunnel, no job left behind (its files safe first)."""
        await self._close_tunnel()
        if self.job_id:
            with contextlib.suppress(JobNotFinished):
                await self._finish("spawn failed")

    async def get_url(self) -> str:
        """After a re-attach the tunnel may listen on another local port."""
        if self.server is not None and self.local_port:
            self.server.ip = "127.0.0.1"
            self.server.port = self.local_port
        return await super().get_url()

    async def _finish(self, reason: str) -> None:
        await finish_job(
            self.condor,
            self._watcher(),
            self.job_id,
            user=self.run_as,
            reason=reason,
            timeout=self.stop_timeout,
        )
        self._watcher().forget(self.job_id)
        with contextlib.suppress(UserFilesError):
            await self.files.remove(str(Path(self.submit_dir) / SECRET_FILE))
            await self.files.sweep_ssh_sessions()

    async def _close_tunnel(self) -> None:
        await self._stand_down()
        if self._attachment is not None:
            await self._attachment.close()

    async def stop(self, now: bool = False) -> None:
        await self._close_tunnel()
        if not self.job_id:
            return
        try:
            await self._finish("stopped by JupyterHub")
        except JobNotFinished as err:
            self.keep_job = True  # User.stop clears the state next: keep the job in it
            self.log.error("%s: stop failed: %s", self._log_name, err)
            raise SpawnError(str(err)) from None
        self._forget_job()

    async def delete_forever(self) -> None:
        """The server is deleted for good: what the hub kept for it goes too."""
        with contextlib.suppress(AccountRefused, UserFilesError, SpawnError):
            await self.files.remove(str(self._paths().submit_dir))


__all__ = ["CondorSpawner", "SpawnError"]
