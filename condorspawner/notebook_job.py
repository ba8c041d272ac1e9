"""One notebook job's lifecycle: submitted, followed, reached through a tunnel, ended safely.

Two adapters call the same methods: :class:`~condorspawner.spawner.CondorSpawner`
(JupyterHub: state, progress page, route, standby page, poll) and ``condorsub
lab``'s :class:`~condorspawner.cli.lab.LabSession` (a terminal). What the job
says on its way goes to ``on_event(message, phase, again)`` (``again``: a phase
that goes on, which a terminal says once); a job that cannot serve a notebook
raises :class:`JobFailed` with the sentence the user reads. The collaborators are
explicit: the tools aimed at the job's schedd, the shared queue watcher, the
user's files (as the user), the schedd chooser, the tunnel (``Attachment``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from condorspawner.attach import AttachError, Attachment, TunnelSettings
from condorspawner.condor import Condor, CondorError, CondorTimeout, ScheddUnavailable
from condorspawner.errors import JobFailed, SpawnError
from condorspawner.finish import finish_job
from condorspawner.jobad import (
    HUB_ATTR,
    RUNNING,
    SERVER_ATTR,
    SPAWN_ATTR,
    USER_ATTR,
    id_of,
    is_,
    run_dated,
)
from condorspawner.progress import Phase
from condorspawner.protocol import SECRET_FILE, Rendezvous, job_start
from condorspawner.schedds import NoSchedd, ScheddChooser, multi
from condorspawner.site import Site
from condorspawner.userfiles import UserFiles, UserFilesError
from condorspawner.watcher import JobEnded, JobHeld, QueueWatcher, StillQueued, follow_job

TOKEN_AUTHZ = ("READ", "WRITE")  # condor_q needs READ; submit, rm, hold, release WRITE

OnEvent = Callable[[str, int, bool], None]


@dataclass
class JobRecord:
    """What is kept of a notebook job across hub restarts (the spawner's saved state)."""

    job_id: str | None = None
    submit_dir: str | None = None
    local_port: int | None = None
    nonce: str | None = None  # the rendezvous (protocol.Rendezvous)
    spawn_id: str | None = None  # the spawn's mark: finds a job whose submit answer was lost
    schedd: str | None = None  # the job's access point, for life (-name on every command)
    keep_job: bool = False  # a stop could not end the job safely: kept (held) for the next start

    def saved(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def load(self, state: dict[str, Any]) -> None:
        for f in fields(self):
            setattr(self, f.name, state.get(f.name, f.default))

    def forget(self) -> None:
        self.load({})


class NotebookJob:
    """A notebook server as an HTCondor job: the lifecycle both adapters share."""

    def __init__(
        self,
        site: Site,
        record: JobRecord,
        *,
        hub_id: str,
        user: str,
        server: str,
        run_as: str | None,
        files: UserFiles,
        tunnel: TunnelSettings,
        stop_timeout: float,
        intervals: tuple[float, float] = (5.0, 1.0),
        on_event: OnEvent | None = None,
        persist: Callable[[], None] | None = None,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        name: str = "",
    ) -> None:
        self.site, self.record = site, record
        self.hub_id, self.user, self.server, self.run_as = hub_id, user, server, run_as
        self.files, self.tunnel, self.stop_timeout = files, tunnel, stop_timeout
        self.intervals = intervals  # the queue's (normal, while a spawn waits)
        self.on_event: OnEvent = on_event or (lambda message, phase, again: None)
        self.persist = persist or (lambda: None)
        self.log = log or logging.getLogger("condorspawner.notebook_job")
        self.name = name or f"{user}:{server}"  # in log lines
        self.times: dict[str, float] = {}  # monotonic: submitted, running, listening, ready
        self.fixed_schedd = False  # the user named the schedd: no fail-over
        self._attachment: Attachment | None = None
        self._announced: tuple[str | None, int | None] | None = None  # the run said running

    # --- collaborators --------------------------------------------------------------------

    @property
    def condor(self) -> Condor:
        """The tools aimed at the job's schedd (the site's, before a submission)."""
        return Condor(self.site.pool).for_schedd(self.record.schedd)

    def watcher(self) -> QueueWatcher:
        interval, fast = self.intervals
        return QueueWatcher.shared(self.condor, self.hub_id, interval=interval, fast_interval=fast)

    def chooser(self) -> ScheddChooser:
        return ScheddChooser.shared(Condor(self.site.pool))

    def uid(self) -> int | None:
        """The uid the job's tools run as through run-as (None: this process's own)."""
        if not self.run_as:
            return None
        try:
            return pwd.getpwnam(self.run_as).pw_uid
        except KeyError:
            return None

    @property
    def attachment(self) -> Attachment:
        """The tunnel to this job (made for the job id the record holds)."""
        record = self.record
        if self._attachment is None or self._attachment.job_id != record.job_id:
            uid = self.uid()
            self._attachment = Attachment(
                job_id=record.job_id,
                rendezvous=Rendezvous(record.nonce),
                program=self.condor.command("condor_ssh_to_job", [], self.run_as),
                hub_api=self.tunnel.hub_api,
                env=dict(self.site.pool.environment),
                owners={os.getuid()} | ({uid} if uid is not None else set()),
                ssh_uid=uid,
                local_port=record.local_port or 0,
                max_restarts=self.tunnel.max_restarts,
                ready_timeout=self.tunnel.ready_timeout,
                on_give_up=self.tunnel.on_give_up,
                config_writer=self._write_tunnel_config,
            )
        return self._attachment

    @property
    def tunnel_opened(self) -> Attachment | None:  # the tunnel, if one was made
        return self._attachment

    def _file(self, name: str) -> str:
        return str(Path(self.record.submit_dir) / name)

    async def _write_tunnel_config(self, text: str) -> str:
        """The tunnel's forwards (ssh -F), off every command line: a 0600 file of the user's."""
        path = self._file("tunnel.ssh_config")
        await self.files.prepare(dirs=[], files=[(path, text, 0o600)])
        return path

    # --- finding jobs ---------------------------------------------------------------------

    def marks(self, **more: str) -> str:
        """A constraint for this server's jobs. The marks are public and anybody can set
        them, so with run-as the job's ``Owner`` (set by the schedd) must be the user too.
        (Without run-as every job is the hub's own account's, whatever name the schedd
        gives that identity.)"""
        marks = {HUB_ATTR: self.hub_id, USER_ATTR: self.user, SERVER_ATTR: self.server}
        if self.run_as:
            marks["Owner"] = self.run_as
        marks.update(more)
        return " && ".join(is_(attr, value) for attr, value in marks.items())

    async def job_of_spawn(self, tools: Condor | None = None) -> str | None:
        """The queued job carrying this spawn's mark, or None; raises :class:`CondorError`
        when the schedd does not answer."""
        ads = await (tools or self.condor).q(
            constraint=self.marks(**{SPAWN_ATTR: self.record.spawn_id}),
            attributes=("ClusterId", "ProcId"),
            all_users=True,
        )
        return id_of(ads[0]) if ads else None

    # --- submitting -----------------------------------------------------------------------

    def new_spawn(self, submit_dir: Path, spawn_id: str) -> Rendezvous:
        """A fresh start: its rendezvous, its mark and its directory in the record."""
        meeting = Rendezvous.new()
        self.record.nonce, self.record.spawn_id = meeting.nonce, spawn_id
        self.record.submit_dir = str(submit_dir)
        self._attachment = None
        return meeting

    async def choose_schedd(self, chosen: str | None = None) -> None:
        """The job's schedd: ``chosen`` (no fail-over then), else the least loaded that
        answers (None: the site names one schedd)."""
        self.fixed_schedd = bool(chosen)
        if chosen or not multi(self.site.pool):
            self.record.schedd = chosen
            return
        failing = QueueWatcher.failing(self.site.pool.collector, self.hub_id)
        try:
            self.record.schedd = await self.chooser().choose(failing=failing)
        except NoSchedd as err:
            raise SpawnError(f"Cannot submit now: {err}") from None
        self.log.info("%s: submitting to schedd %s (least loaded)", self.name, self.record.schedd)

    async def token(self, lifetime: int) -> str:
        """An IDTOKEN fetched as the user from the job's schedd: no longer than the job
        may run, READ and WRITE only. A secret: into the private file, nowhere else."""
        try:
            return await self.condor.token_fetch(
                lifetime=lifetime, authz=TOKEN_AUTHZ, user=self.run_as
            )
        except CondorError as err:
            raise SpawnError(f"Cannot fetch an HTCondor token for the job: {err}") from None

    async def submit(self, submit_file: Path, summary: str) -> str:
        """``condor_submit`` as the user, in ``/`` (root never enters a user's path); on to
        the next schedd that answers; a lost answer is found by the spawn's mark."""
        self.persist()
        try:
            while True:
                try:
                    result = await self.condor.submit(str(submit_file), user=self.run_as, cwd="/")
                    break
                except ScheddUnavailable:
                    if self.fixed_schedd or not self.record.schedd:
                        raise
                    self.chooser().mark_down(self.record.schedd)
                    await self.choose_schedd()
                    self.persist()
            self.record.job_id = result.job_id
        except CondorTimeout as err:
            with contextlib.suppress(CondorError):
                self.record.job_id = await self.job_of_spawn()
            if self.record.job_id is None:
                raise SpawnError(f"condor_submit failed: {err}") from None
        except CondorError as err:
            raise SpawnError(f"condor_submit failed: {err}") from None
        self.times["submitted"] = time.monotonic()
        self.persist()
        self.watcher().watch(self.record.job_id, pending=True)
        where = f" to schedd {self.record.schedd}" if self.record.schedd else ""
        self.on_event(
            f"Submitted as HTCondor job {self.record.job_id}{where} ({summary})",
            Phase.SUBMITTED,
            False,
        )
        return self.record.job_id

    # --- following ------------------------------------------------------------------------

    def since(self, key: str) -> str:
        """Whole seconds since a point of the job's times (e.g. "12 s")."""
        return f"{time.monotonic() - self.times.get(key, time.monotonic()):.0f} s"

    async def follow(
        self,
        done: Callable[[dict[str, Any]], bool],
        *,
        pending: bool = False,
        stop: asyncio.Event | None = None,
        task: asyncio.Future[Any] | None = None,
    ) -> dict[str, Any] | None:
        """Follow the job until ``done(ad)`` (that ad), ``stop`` or ``task`` (None); raises
        :class:`JobFailed` when it is held, ends, or waits past the site's start timeout."""
        job_id = self.record.job_id
        state = self.watcher().watch(job_id, pending=pending)

        def idle(reason: str, new: bool) -> None:
            if new:
                self.on_event(f"Job {job_id} is queued: {reason}", Phase.QUEUED, False)
            else:
                waited = self.since("submitted")
                self.on_event(
                    f"Job {job_id} is still queued ({waited}): {reason}", Phase.QUEUED, True
                )

        def running(ad: dict[str, Any]) -> None:
            if self._announced == (job_id, job_start(ad)):
                return  # this run was told already (an earlier follow)
            self._announced = (job_id, job_start(ad))
            self.times.setdefault("running", time.monotonic())
            host = ad.get("RemoteHost", "an execute point")
            self.on_event(f"Job {job_id} running on {host}", Phase.ON_HOST, False)

        limit = self.site.notebook.start_timeout
        try:
            return await follow_job(
                state,
                done,
                start_timeout=limit,
                on_idle=idle,
                on_running=running,
                stop=stop,
                task=task,
            )
        except JobHeld as err:
            raise JobFailed(f"HTCondor held job {job_id}: {err.reason}", err.ad) from None
        except JobEnded as err:
            raise JobFailed(await self.ended_message(err.ad), err.ad, ended=True) from None
        except StillQueued as err:
            raise JobFailed(
                f"Job {job_id} was still waiting in the queue after {limit} s "
                f"({err.reason}); it was removed.",
                err.ad,
            ) from None

    async def follow_to_run(
        self, *, pending: bool = False, stop: asyncio.Event | None = None
    ) -> dict[str, Any] | None:
        """Until the job runs and the schedd has dated the run (the tunnel's way in)."""
        return await self.follow(
            lambda ad: ad.get("JobStatus") == RUNNING and run_dated(ad), pending=pending, stop=stop
        )

    def settle(self) -> None:
        """The spawn is over: the queue at its normal interval again."""
        if self.record.job_id:
            self.watcher().settle(self.record.job_id)

    async def ended_message(self, ad: dict[str, Any]) -> str:
        """What became of an ended job, with the end of its error output."""
        code = ad.get("ExitCode")
        how = (
            f"exit code {code}"
            if code is not None
            else ad.get("RemoveReason") or f"status {ad.get('JobStatus')}"
        )
        if "ready" in self.times and code == 0:
            return f"Job {self.record.job_id} ended ({how}): the server stopped by itself."
        when = "" if "ready" in self.times else " before the notebook was ready"
        message = f"Job {self.record.job_id} ended{when} ({how})."
        tail = await self.files.tail(self._file("notebook.err"))
        return f"{message} Its error output ends with:\n{tail}" if tail else message

    async def event_log(self) -> str:
        """The end of the job's own event log (``notebook.log``, written by the schedd)."""
        return await self.files.tail(self._file("notebook.log"), 400)

    # --- reaching the server --------------------------------------------------------------

    def reaches(self, ad: dict[str, Any]) -> bool:
        """Is there a working tunnel to the run this ad describes?"""
        tunnel = self._attachment
        return (
            tunnel is not None
            and tunnel.healthy
            and ad.get("JobStatus") == RUNNING
            and tunnel.run == job_start(ad)
        )

    async def connect(self, ad: dict[str, Any], *, stop: asyncio.Event | None = None) -> int | None:
        """Open the tunnel to this run while the server starts in the job, following the
        job (a job that ends fails at once); the local port (None: ``stop`` was set)."""
        job_id = self.record.job_id
        self.on_event(
            f"Opening the tunnel to job {job_id} (condor_ssh_to_job); "
            "the notebook server is starting in the job",
            Phase.OPENING,
            False,
        )
        told: list[asyncio.Task[None]] = []

        def listening() -> None:
            told.append(asyncio.ensure_future(self._server_starting()))

        opening = asyncio.create_task(self.attachment.open(job_start(ad), listening))
        try:
            await self.follow(lambda ad: False, task=opening, stop=stop)
        finally:
            for task in (opening, *told):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        if opening.cancelled():
            return None
        try:
            self.record.local_port = opening.result()
        except AttachError as err:
            raise JobFailed(str(err)) from None
        self.times["ready"] = time.monotonic()
        self.persist()
        self.on_event(
            f"The notebook server answers through the tunnel (127.0.0.1:"
            f"{self.record.local_port} to job {job_id}, {self.since('running')} after the job "
            "started)",
            Phase.ANSWERS,
            False,
        )
        return self.record.local_port

    async def _server_starting(self) -> None:
        """While the server starts behind an open tunnel: a word every poll interval."""
        job_id = self.record.job_id
        self.times["listening"] = time.monotonic()
        self.on_event(
            f"Tunnel open to job {job_id}; the notebook server is starting "
            "(a first start in a fresh environment can take a minute)",
            Phase.STARTING,
            False,
        )
        for step in range(1, 15):
            await asyncio.sleep(max(self.intervals[0], 1.0))
            self.on_event(
                f"The notebook server in job {job_id} is still starting "
                f"({self.since('listening')})",
                Phase.STARTING + step,
                True,
            )

    async def close_tunnel(self) -> None:
        if self._attachment is not None:
            await self._attachment.close()

    # --- ending ---------------------------------------------------------------------------

    async def finish(self, reason: str) -> None:
        """No tunnel, no job: held, its files home, removed (:func:`finish_job`); raises
        :class:`JobNotFinished` when that cannot be done in time (the job is kept)."""
        await self.close_tunnel()
        job_id = self.record.job_id
        await finish_job(
            self.condor,
            self.watcher(),
            job_id,
            user=self.run_as,
            reason=reason,
            timeout=self.stop_timeout,
        )
        self.watcher().forget(job_id)
        await self.tidy()

    async def tidy(self, *more: str) -> None:
        """The private file (and ``more`` of the job's files) and leftover ssh sessions gone."""
        if not self.record.submit_dir:
            return
        with contextlib.suppress(UserFilesError):
            await self.files.remove(self._file(SECRET_FILE), *(self._file(n) for n in more))
            await self.files.sweep_ssh_sessions()
