"""CondorSpawner: each notebook server is an HTCondor job, reached through condor_ssh_to_job.

This module is the JupyterHub adapter: the spawner's traits, its state, and
the contract JupyterHub's own code defines (``User.stop`` calls ``stop()``
only when ``poll()`` says the server runs, then clears the state; so ``poll``
ends a job itself, safely, before it reports a server gone). The pieces it
drives each live in a module of their own: the user's files
(:mod:`~condorspawner.userfiles`), the hub–job protocol
(:mod:`~condorspawner.protocol`), the tunnel (:mod:`~condorspawner.attach`),
ending a job without losing its files (:mod:`~condorspawner.finish`), the
shared queue watcher (:mod:`~condorspawner.watcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Callable, Float, Integer, List, Unicode, Union, default

from condorspawner import form
from condorspawner.accounts import DEFAULT_DENIED, AccountRefused, check_account
from condorspawner.attach import AttachError, Attachment
from condorspawner.condor import Condor, CondorError, CondorTimeout
from condorspawner.finish import JobNotFinished, finish_job
from condorspawner.jobfiles import JobPaths, job_site_text, write_job_files
from condorspawner.joblog import ended_in_log
from condorspawner.protocol import (
    HUB_ATTR,
    SECRET_FILE,
    SERVER_ATTR,
    SPAWN_ATTR,
    USER_ATTR,
    JobSecret,
    Rendezvous,
    job_start,
)
from condorspawner.render import NotebookPayload, Renderer
from condorspawner.request import JobRequest, RequestError
from condorspawner.site import Site, cached_site
from condorspawner.userfiles import UserFiles, UserFilesError
from condorspawner.watcher import COMPLETED, HELD, IDLE, REMOVED, RUNNING, QueueWatcher

STATE_KEYS = ("job_id", "submit_dir", "local_port", "nonce", "spawn_id", "run")


class SpawnError(RuntimeError):
    """A spawn that cannot succeed; the message is shown to the user."""


class CondorSpawner(Spawner):
    """Run each notebook server as an HTCondor job in the container OS the user chose."""

    site_file = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""The site file (TOML). Default: $CONDORSPAWNER_SITE, else
        /etc/condorspawner/site.toml, else built-in defaults. Read and checked when
        the spawner is made (at hub start-up for every running server).""",
    )
    hub_id = Unicode(
        config=True,
        help="""Marks this hub's jobs (job attribute CondorSpawnerHub), so one query finds
        them all and two hubs on one schedd never touch each other's jobs.""",
    )

    @default("hub_id")
    def _default_hub_id(self) -> str:
        import socket

        return f"jupyterhub@{socket.getfqdn()}"

    submit_root = Unicode(
        "{home}/.condorspawner",
        config=True,
        help="""Where each server's job files (description, wrapper, logs, the private
        token file) are written, in the user's name. {home} and {username} are replaced.""",
    )
    work_directory = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""The user's work directory that goes into the job and comes back when it
        ends or is evicted. Default: the site file's notebook.work_directory. '~' is the
        user's home; {username} is replaced. A named server gets '<directory>-<name>'.""",
    )
    job_python = Unicode(
        sys.executable,
        config=True,
        help="""The Python that has condorspawner and jupyterhub installed, on the
        execute points (the job runs `-m condorspawner.launcher`) and on the hub (file
        operations as the user). Every user must be able to run it: not under /root.""",
    )
    launcher_args = List(
        Unicode(),
        config=True,
        help="""More arguments for condorspawner-singleuser in the job, e.g.
        ["--server", "/opt/bin/my-server"] or ["--wait-for-hub", "120"].""",
    )
    queue_poll_interval = Float(
        10.0, config=True, help="Seconds between the shared watcher's condor_q calls."
    )
    queue_poll_interval_pending = Float(
        1.0, config=True, help="Seconds between condor_q calls while some spawn is waiting."
    )
    tunnel_max_restarts = Integer(
        5, config=True, help="Failed tunnel restarts in a row before the server is ended."
    )
    stop_timeout = Float(
        60.0,
        config=True,
        help="""Seconds stop() waits for the work directory to come back. A job whose
        files are not back by then is kept held (never removed) and the stop fails.""",
    )
    unknown_timeout = Float(
        600.0,
        config=True,
        help="""Seconds a job may be in neither the queue nor the history (nor ended in
        its own event log) before its server is reported gone.""",
    )
    min_uid = Integer(
        1000, config=True, help="Users whose account has a lower uid get no notebook job."
    )
    denied_users = List(
        Unicode(),
        default_value=list(DEFAULT_DENIED),
        config=True,
        help="Accounts that never get a notebook job (root is always refused).",
    )
    profile_list = Union(
        [List(), Callable()],
        default_value=[],
        config=True,
        help="""Presets offered in the form, like kubespawner's. Each is a dict:
        {"display_name": "...", "slug": "small", "default": True,
         "user_options": {"cpus": 2, "memory": "4GB"},
         "allowed_containers": ["Rocky9"]}.
        The user's own values override a profile's user_options; allowed_containers
        restricts the OS choice. May be a callable (spawner) -> list.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site: Site = cached_site(self.site_file)  # a wrong site file fails here, at once
        self._forget_job()
        self.last_end: str | None = None
        self.keep_job = False
        self._attachment: Attachment | None = None
        self._events: list[dict[str, Any]] = []
        self._events_changed = asyncio.Event()
        self._spawn_done = True

    # --- state ----------------------------------------------------------------

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

    def _persist_state(self) -> None:
        """Save the state now (JupyterHub saves it only after start() returns)."""
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is not None and getattr(self, "db", None) is not None:
            orm_spawner.state = self.get_state()
            self.db.commit()

    # --- site, accounts, paths ----------------------------------------------------

    @property
    def condor(self) -> Condor:
        return Condor(self.site.pool)

    @property
    def run_as(self) -> str | None:
        return self.user.name if self.site.pool.run_as else None

    @property
    def files(self) -> UserFiles:
        """File operations in the user's directories, as the user."""
        prefix = self.condor.user_prefix(self.run_as) if self.run_as else []
        return UserFiles(prefix, self.job_python)

    def _paths(self) -> JobPaths:
        """The user's account (checked) and this server's directories."""
        if self.site.pool.run_as:
            account = check_account(self.user.name, min_uid=self.min_uid, denied=self.denied_users)
            home = account.pw_dir
        else:
            home = None
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

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        # our own idle limit (site file) ends a queued spawn first, with its reason
        return int(cached_site(self.site_file).notebook.start_timeout) + 120

    @default("http_timeout")
    def _default_http_timeout(self) -> int:
        return 120

    # --- form and options -----------------------------------------------------------

    def _profiles(self) -> list[dict[str, Any]]:
        profiles = self.profile_list
        return list(profiles(self) if callable(profiles) else profiles)

    @default("options_form")
    def _default_options_form(self) -> Any:
        return lambda spawner: form.render_form(spawner.site, spawner._profiles())

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return form.options_from_form(formdata)

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        return CondorSpawner._validate_user_options

    @staticmethod
    def _validate_user_options(spawner: CondorSpawner, user_options: dict[str, Any]) -> None:
        """Refuse bad options before anything is submitted (JupyterHub answers 400)."""
        try:
            spawner.job_request()
        except RequestError as err:
            raise web.HTTPError(400, f"Invalid server options: {err}") from None

    def job_request(self) -> JobRequest:
        """The user's options (through the chosen profile) checked against the site."""
        options = dict(self.user_options or {})
        profile = form.find_profile(self._profiles(), options.pop("profile", None))
        return JobRequest.from_options(self.site, form.apply_profile(profile, options))

    # --- progress -----------------------------------------------------------------

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

    def _watcher(self) -> QueueWatcher:
        return QueueWatcher.shared(
            self.condor,
            self.hub_id,
            interval=self.queue_poll_interval,
            fast_interval=self.queue_poll_interval_pending,
        )

    # --- start --------------------------------------------------------------------

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
            await self._follow(lambda ad: ad.get("JobStatus") == RUNNING)
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

    def _marks(self, **more: str) -> str:
        """A constraint for this server's jobs. The marks are public and anybody can set
        them, so the job's ``Owner`` (set by the schedd) must be the user too."""
        import classad2

        marks = {HUB_ATTR: self.hub_id, USER_ATTR: self.user.name, SERVER_ATTR: self.name or ""}
        if self.run_as:
            marks["Owner"] = self.run_as
        marks.update(more)
        return " && ".join(f"{attr} == {classad2.quote(value)}" for attr, value in marks.items())

    async def _settle_leftovers(self) -> None:
        """Never two jobs for one server: end (safely) what an earlier spawn left."""
        try:
            ads = await self.condor.q(
                constraint=self._marks(), attributes=("ClusterId", "ProcId"), all_users=True
            )
        except CondorError as err:
            raise SpawnError(f"The schedd does not answer ({err}); try again later.") from None
        for ad in ads:
            job_id = f"{ad['ClusterId']}.{ad['ProcId']}"
            self._event(f"Ending job {job_id}, left by an earlier start of this server", 5)
            try:
                await finish_job(
                    self.condor,
                    self._watcher(),
                    job_id,
                    user=self.run_as,
                    reason="replaced by a new server",
                    timeout=self.stop_timeout,
                )
            except JobNotFinished as err:
                raise SpawnError(str(err)) from None
            self._watcher().forget(job_id)
        self.keep_job = False
        self._forget_job()

    async def _submit(self, request: JobRequest, paths: JobPaths) -> None:
        site = self.site
        meeting = Rendezvous.new()
        self.nonce, self.spawn_id = meeting.nonce, uuid.uuid4().hex
        self.submit_dir = str(paths.submit_dir)
        secret = JobSecret(
            env=self._job_environment(),
            rendezvous=meeting,
            site=job_site_text(site),
            hub_api=site.notebook.hub_api,
        )
        launcher = [
            self.job_python,
            "-m",
            "condorspawner.launcher",
            "--grace",
            str(site.notebook.grace_period),
            "--root-dir",
            paths.work_dir.name,
            *self.launcher_args,
        ]
        payload = NotebookPayload(
            command=tuple(launcher),
            hub_id=self.hub_id,
            user=self.user.name,
            server=self.name or "",
            spawn=self.spawn_id,
            input_files=(str(paths.submit_dir / SECRET_FILE), paths.work_dir.name),
            output_files=(paths.work_dir.name,),
            initialdir=str(paths.work_dir.parent),
            log_dir=str(paths.submit_dir),
        )
        try:
            job = Renderer(site).render(request, payload, wrapper=str(paths.wrapper))
        except RequestError as err:
            raise SpawnError(f"Invalid server options: {err}") from None
        try:
            await write_job_files(self.files, paths, job, secret.dumps())
        except UserFilesError as err:
            raise SpawnError(f"Cannot write the job's files in your directories: {err}") from None
        self._persist_state()
        try:
            result = await self.condor.submit(
                str(paths.submit_file), user=self.run_as, cwd=str(paths.submit_dir)
            )
            self.job_id = result.job_id
        except CondorTimeout as err:
            self.job_id = await self._find_by_spawn_id()
            if self.job_id is None:
                raise SpawnError(f"condor_submit failed: {err}") from None
        except CondorError as err:
            raise SpawnError(f"condor_submit failed: {err}") from None
        self._persist_state()
        self._watcher().watch(self.job_id, pending=True)
        self._event(
            f"Submitted as HTCondor job {self.job_id} "
            f"({request.cpus} CPUs, {request.container.label})",
            10,
        )

    async def _find_by_spawn_id(self) -> str | None:
        """The job this spawn submitted, when condor_submit's answer was lost."""
        with contextlib.suppress(CondorError):
            ads = await self.condor.q(
                constraint=self._marks(**{SPAWN_ATTR: self.spawn_id}),
                attributes=("ClusterId", "ProcId"),
                all_users=True,
            )
            if ads:
                return f"{ads[0]['ClusterId']}.{ads[0]['ProcId']}"
        return None

    def _job_environment(self) -> dict[str, str]:
        """What the notebook needs from the hub (token included): into the private file."""
        env = self.get_env()
        keep = set(self.environment)
        return {k: v for k, v in env.items() if k.startswith(("JUPYTERHUB_", "JPY_")) or k in keep}

    async def _follow(self, done: Any) -> dict[str, Any]:
        """Follow the spawn's job until ``done(ad)``: queue reasons, hold, end, start timeout."""
        state = self._watcher().watch(self.job_id, pending=True)
        idle_limit = time.monotonic() + self.site.notebook.start_timeout
        said_idle, said_running = None, False
        while True:
            ad = state.ad
            if ad is not None:
                status = ad.get("JobStatus")
                if status == HELD:
                    reason = ad.get("HoldReason", "no reason given")
                    raise SpawnError(f"HTCondor held job {self.job_id}: {reason}")
                if state.gone or status in (REMOVED, COMPLETED):
                    raise SpawnError(await self._ended_message(ad))
                if status == IDLE:
                    reason = ad.get("LastRejMatchReason") or "waiting to be matched"
                    if reason != said_idle:
                        self._event(f"Job {self.job_id} is queued: {reason}", 20)
                        said_idle = reason
                    if time.monotonic() > idle_limit:
                        limit = self.site.notebook.start_timeout
                        raise SpawnError(
                            f"Job {self.job_id} was still waiting in the queue after {limit} s "
                            f"({reason}); it was removed."
                        )
                if status == RUNNING and not said_running:
                    said_running = True
                    host = ad.get("RemoteHost", "an execute point")
                    self._event(f"Job {self.job_id} running on {host}", 40)
                if done(ad):
                    return ad
            changed = state.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)

    def _attach(self) -> Attachment:
        if self._attachment is None or self._attachment.job_id != self.job_id:
            self._attachment = Attachment(
                job_id=self.job_id,
                rendezvous=Rendezvous(self.nonce),
                program=self.condor.command("condor_ssh_to_job", [], self.run_as),
                hub_api=self._hub_api() if self.site.notebook.hub_api == "tunnel" else None,
                env=dict(self.site.pool.environment),
                owners=self._tunnel_owners(),
                local_port=self.local_port or 0,
                max_restarts=self.tunnel_max_restarts,
                ready_timeout=float(self.http_timeout),
            )
        return self._attachment

    def _tunnel_owners(self) -> set[int]:
        """Who runs this server's tunnel processes: the hub, and the user through run-as."""
        import os
        import pwd

        owners = {os.getuid()}
        if self.run_as:
            with contextlib.suppress(KeyError):
                owners.add(pwd.getpwnam(self.run_as).pw_uid)
        return owners

    async def _connect(self) -> None:
        """Open the tunnel while the server starts in the job; fail fast if the job ends."""
        self._event(f"Opening the tunnel to job {self.job_id}; the server is starting", 60)
        ad = self._watcher().jobs[self.job_id].ad or {}
        opening = asyncio.create_task(self._attach().open(job_start(ad)))
        watching = asyncio.create_task(self._follow(lambda ad: False))
        try:
            await asyncio.wait({opening, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (opening, watching):
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
        self.run = self._attach().run
        self._persist_state()
        self._event(f"Tunnel established (127.0.0.1:{self.local_port} to job {self.job_id})", 90)

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

    # --- poll, stop ---------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the server lives; else it has been ended safely first. Never raises."""
        try:
            return await self._poll()
        except Exception:
            self.log.exception("%s: poll failed; the server counts as running", self._log_name)
            return None

    async def _poll(self) -> int | None:
        if not self.job_id:
            return 0
        watcher = self._watcher()
        state = watcher.watch(self.job_id)
        if state.ad is None:
            await watcher.ensure_fresh(max_age=self.queue_poll_interval)
        ad = state.ad
        if state.missing_since is not None:
            return await self._settle_missing(time.monotonic() - state.missing_since)
        if ad is None:
            return None  # unknown: never "gone" on a failed or empty look
        status = ad.get("JobStatus")
        if state.gone or status in (REMOVED, COMPLETED):
            await self._close_tunnel()
            code = ad.get("ExitCode")
            return code if isinstance(code, int) and code != 0 else 1 if code is None else 0
        if status == HELD:
            return await self._end(f"HTCondor held job {self.job_id}: {ad.get('HoldReason')}")
        if status == IDLE:
            waited = time.time() - (ad.get("EnteredCurrentStatus") or time.time())
            if waited > self.site.notebook.start_timeout:
                return await self._end(
                    f"job {self.job_id} was evicted and waited {waited:.0f} s to run again"
                )
            return None  # evicted: HTCondor runs it again, the next poll re-attaches
        if status == RUNNING:
            return await self._check_tunnel(ad)
        return None

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

    async def _check_tunnel(self, ad: dict[str, Any]) -> int | None:
        """Running job: the tunnel must reach this run, or be made to (restart, eviction)."""
        attachment = self._attach()
        run = job_start(ad)
        if attachment.tunnel is not None and attachment.run == run:
            if attachment.healthy:
                return None
            return await self._end(f"the tunnel to job {self.job_id} failed: {attachment.failure}")
        before = attachment.local_port
        try:
            self.local_port = await attachment.open(run)
        except AttachError as err:
            return await self._end(str(err))
        self.run = run
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

    async def _move_route(self) -> None:
        """The tunnel had to take another local port: the proxy's route follows it."""
        if self.server is None:
            return
        self.server.port = self.local_port
        self.db.commit()
        proxy = self.user.settings.get("proxy")
        if proxy is not None and not self.pending:
            await proxy.add_user(self.user, self.name)
            self.log.info("%s: proxy route moved to port %s", self._log_name, self.local_port)

    async def get_url(self) -> str:
        """After a re-attach the tunnel may listen on another local port."""
        if self.server is not None and self.local_port:
            self.server.ip = "127.0.0.1"
            self.server.port = self.local_port
        return await super().get_url()

    async def _end(self, why: str) -> int | None:
        """poll() found the server dead: end its job safely first, then report it (1)."""
        self.log.warning("%s: %s; ending the job", self._log_name, why)
        await self._close_tunnel()
        try:
            await self._finish(why)
        except JobNotFinished as err:
            self.log.error("%s: %s", self._log_name, err)
            return None  # still ours, still followed: the next poll tries again
        self.last_end = why
        return 1

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
        self.keep_job = False
        self._forget_job()

    async def delete_forever(self) -> None:
        """The server is deleted for good: what the hub kept for it goes too."""
        with contextlib.suppress(AccountRefused, UserFilesError, SpawnError):
            await self.files.remove(str(self._paths().submit_dir))


__all__ = ["CondorSpawner", "SpawnError"]
