"""CondorSpawner: each notebook server is an HTCondor job, reached through condor_ssh_to_job.

Written on JupyterHub's Spawner directly (see DESIGN.md): one shared queue
watcher per schedd instead of a query per user; a failing query means
"unknown", never "gone"; the hub reaches the notebook through a supervised
``condor_ssh_to_job`` tunnel, so no inbound port is needed on either side;
the API token travels as a private file, never in the job ad.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import random
import socket
import sys
import time
from collections import abc
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Callable, Float, Integer, List, Unicode, Union, default

from condorspawner import form
from condorspawner.condor import Condor, CondorError, JobNotFound
from condorspawner.launcher import HUB_PORT_ATTR, PORT_ATTR, SECRET_FILE
from condorspawner.render import NotebookPayload, Renderer
from condorspawner.request import JobRequest, RequestError
from condorspawner.site import Site, load_site
from condorspawner.watcher import COMPLETED, HELD, IDLE, REMOVED, RUNNING, QueueWatcher
from proxy_tunnel import Tunnel, TunnelError, port_bindable


def _random_port() -> int:
    """A port for the job to listen on (it takes another if this one is taken)."""
    return random.randint(20000, 59999)  # noqa: S311 (not a secret)


class SpawnError(RuntimeError):
    """A spawn that cannot succeed; the message is shown to the user."""


class CondorSpawner(Spawner):
    """Run each notebook server as an HTCondor job in the container OS the user chose."""

    site_file = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""The site file (TOML). Default: $CONDORSPAWNER_SITE, else
        /etc/condorspawner/site.toml, else built-in defaults.""",
    )
    hub_id = Unicode(
        config=True,
        help="""Marks this hub's jobs (job attribute CondorSpawnerHub), so one query finds
        them all and two hubs on one schedd never touch each other's jobs.""",
    )

    @default("hub_id")
    def _default_hub_id(self) -> str:
        return f"jupyterhub@{socket.getfqdn()}"

    submit_root = Unicode(
        "{home}/.condorspawner",
        config=True,
        help="""Where each server's job files (description, wrapper, logs, the private
        token file) are written on the hub. {home} and {username} are replaced.""",
    )
    work_directory = Unicode(
        None,
        allow_none=True,
        config=True,
        help="""The user's work directory that goes into the job and comes back when it
        ends or is evicted. Default: the site file's notebook.work_directory. '~' is the
        user's home; {username} is replaced.""",
    )
    job_python = Unicode(
        sys.executable,
        config=True,
        help="""The Python on the execute points that has condorspawner and jupyterhub
        installed (the job runs it with `-m condorspawner.launcher`). It must be readable
        and executable by the users: not under /root.""",
    )
    launcher_args = List(
        Unicode(),
        config=True,
        help="""More arguments for condorspawner-singleuser in the job, e.g.
        ["--server", "/opt/bin/my-server"] or ["--wait-for-hub", "120"].""",
    )
    queue_poll_interval = Float(
        10.0,
        config=True,
        help="Seconds between the shared watcher's condor_q calls while no spawn waits.",
    )
    queue_poll_interval_pending = Float(
        1.0,
        config=True,
        help="Seconds between condor_q calls while some spawn is waiting.",
    )
    tunnel_max_restarts = Integer(
        5,
        config=True,
        help="Failed tunnel restarts in a row before the server is reported stopped.",
    )
    stop_timeout = Float(
        60.0,
        config=True,
        help="Seconds stop() waits for the work directory to come back and the job to leave.",
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

    # --- state ----------------------------------------------------------------

    job_id: str | None = None
    notebook_port: int | None = None
    hub_api_port: int | None = None
    local_port: int | None = None
    submit_dir: str | None = None

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.job_id = state.get("job_id")
        self.notebook_port = state.get("notebook_port")
        self.hub_api_port = state.get("hub_api_port")
        self.local_port = state.get("local_port")
        self.submit_dir = state.get("submit_dir")

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        for key in ("job_id", "notebook_port", "hub_api_port", "local_port", "submit_dir"):
            value = getattr(self, key)
            if value is not None:
                state[key] = value
        return state

    def clear_state(self) -> None:
        super().clear_state()
        self.job_id = self.notebook_port = self.hub_api_port = None
        self.local_port = self.submit_dir = None

    # --- site, form, options ----------------------------------------------------

    @property
    def site(self) -> Site:
        if getattr(self, "_site", None) is None:
            self._site = load_site(self.site_file)
        return self._site

    @property
    def condor(self) -> Condor:
        return Condor(self.site.pool)

    @default("start_timeout")
    def _default_start_timeout(self) -> int:
        # our own idle limit (site file) ends a queued spawn first, with its reason
        return int(self.site.notebook.start_timeout) + 120

    @default("http_timeout")
    def _default_http_timeout(self) -> int:
        return 120

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

    # --- paths and accounts -------------------------------------------------------

    def _account(self) -> pwd.struct_passwd | None:
        try:
            return pwd.getpwnam(self.user.name)
        except KeyError:
            return None

    def _expand(self, template: str) -> Path:
        account = self._account()
        home = account.pw_dir if account else None
        if ("{home}" in template or template.startswith("~")) and home is None:
            raise SpawnError(f"user {self.user.name} has no account (home directory) on the hub")
        text = template.replace("{username}", self.user.name).replace("{home}", home or "")
        if text.startswith("~"):
            text = home + text[1:]
        return Path(text)

    def _chown(self, *paths: Path) -> None:
        account = self._account()
        if os.geteuid() == 0 and account is not None and self.site.pool.run_as:
            for path in paths:
                os.chown(path, account.pw_uid, account.pw_gid)

    @property
    def run_as(self) -> str | None:
        return self.user.name if self.site.pool.run_as else None

    def _job_environment(self) -> dict[str, str]:
        """What the notebook needs from the hub (token included): into the private file."""
        env = self.get_env()
        keep = set(self.environment)
        return {k: v for k, v in env.items() if k.startswith(("JUPYTERHUB_", "JPY_")) or k in keep}

    def _site_text(self) -> str | None:
        """The site file, for condorsub in the notebook's terminals."""
        source = Path(self.site.source)
        return source.read_text() if source.is_file() else None

    def _hub_api(self) -> tuple[str, int]:
        url = urlparse(self.hub.api_url)
        host = url.hostname or "127.0.0.1"
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 (a bind-all address, not a bind)
            host = "127.0.0.1"
        return host, url.port or (443 if url.scheme == "https" else 80)

    # --- progress -----------------------------------------------------------------

    def _event(self, message: str, progress: int) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._events.append({"progress": progress, "message": message})
        self._events_changed.set()

    async def progress(self):
        seen = 0
        while True:
            events = getattr(self, "_events", [])
            while seen < len(events):
                yield events[seen]
                seen += 1
            if getattr(self, "_spawn_done", True) and seen >= len(events):
                return
            self._events_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events_changed.wait(), 1.0)

    # --- start --------------------------------------------------------------------

    def _watcher(self) -> QueueWatcher:
        return QueueWatcher.shared(
            self.condor,
            self.hub_id,
            interval=self.queue_poll_interval,
            fast_interval=self.queue_poll_interval_pending,
        )

    async def start(self) -> tuple[str, int]:
        self._events: list[dict[str, Any]] = []
        self._events_changed = asyncio.Event()
        self._spawn_done = False
        self._said_running = False
        try:
            request = self.job_request()
        except RequestError as err:
            self._spawn_done = True
            raise SpawnError(f"Invalid server options: {err}") from None
        self._timings = {"start": time.monotonic()}
        try:
            await self._submit(request)
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

    async def _submit(self, request: JobRequest) -> None:
        site = self.site
        work = self._expand(self.work_directory or site.notebook.work_directory)
        submit_dir = self._expand(self.submit_root) / (self.name or "default")
        for directory in (work, submit_dir):
            directory.mkdir(parents=True, exist_ok=True)
        submit_dir.chmod(0o700)
        secret = submit_dir / SECRET_FILE
        secret.touch(mode=0o600)
        secret.chmod(0o600)
        # The hub picks the ports, so it can open the tunnel as soon as the job runs; the
        # launcher takes others only if these are taken, and publishes what it bound.
        self._planned = (_random_port(), _random_port())
        secret.write_text(
            json.dumps(
                {
                    "env": self._job_environment(),
                    "site": self._site_text(),
                    "ports": {"notebook": self._planned[0], "hub_api": self._planned[1]},
                }
            )
        )
        launcher = [
            self.job_python,
            "-m",
            "condorspawner.launcher",
            "--hub-api",
            site.notebook.hub_api,
            "--grace",
            str(site.notebook.grace_period),
            "--root-dir",
            work.name,
            *self.launcher_args,
        ]
        payload = NotebookPayload(
            command=tuple(launcher),
            hub_id=self.hub_id,
            user=self.user.name,
            input_files=(str(secret), work.name),
            output_files=(work.name,),
            initialdir=str(work.parent),
            log_dir=str(submit_dir),
        )
        try:
            job = Renderer(site).render(request, payload, wrapper=str(submit_dir / "wrapper.sh"))
        except RequestError as err:
            raise SpawnError(f"Invalid server options: {err}") from None
        submit_file = job.write(submit_dir)
        self._chown(work, submit_dir, secret, submit_file, submit_dir / "wrapper.sh")
        self.submit_dir = str(submit_dir)
        try:
            result = await self.condor.submit(
                str(submit_file), user=self.run_as, cwd=str(submit_dir)
            )
        except CondorError as err:
            raise SpawnError(f"condor_submit failed: {err}") from None
        self.job_id = result.job_id
        self._watcher().watch(self.job_id, pending=True)
        self._event(
            f"Submitted as HTCondor job {self.job_id} "
            f"({request.cpus} CPUs, {request.container.label})",
            10,
        )

    async def _follow(self, done: abc.Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Follow the spawn's job until ``done(ad)``: queue reasons, hold, end, start timeout."""
        watcher = self._watcher()
        state = watcher.watch(self.job_id, pending=True)
        idle_limit = time.monotonic() + self.site.notebook.start_timeout
        said_idle = None
        while True:
            ad = state.ad
            if ad is not None:
                status = ad.get("JobStatus")
                if status == HELD:
                    reason = ad.get("HoldReason", "no reason given")
                    raise SpawnError(f"HTCondor held job {self.job_id}: {reason}")
                if state.gone or status in (REMOVED, COMPLETED):
                    raise SpawnError(self._ended_message(ad))
                if status == IDLE:
                    reason = ad.get("LastRejMatchReason") or "waiting to be matched"
                    if reason != said_idle:
                        self._event(f"Job {self.job_id} is queued: {reason}", 20)
                        said_idle = reason
                    if time.monotonic() > idle_limit:
                        await self._remove(
                            f"still idle after {self.site.notebook.start_timeout} s (start timeout)"
                        )
                        raise SpawnError(
                            f"Job {self.job_id} was still waiting in the queue after "
                            f"{self.site.notebook.start_timeout} s ({reason}); it was removed."
                        )
                if status == RUNNING and not getattr(self, "_said_running", False):
                    self._said_running = True
                    host = ad.get("RemoteHost", "an execute point")
                    self._event(f"Job {self.job_id} running on {host}", 40)
                if done(ad):
                    return ad
            changed = state.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)

    async def _connect(self) -> None:
        """Open the tunnel at once on the planned ports, while the server starts in the job.

        If the launcher had to bind other ports (it publishes them with chirp), follow them.
        """
        tunnel_mode = self.site.notebook.hub_api == "tunnel"
        ports = self._planned if tunnel_mode else (self._planned[0], None)
        while True:
            self.notebook_port, self.hub_api_port = ports

            def moved(ad: dict[str, Any], ports: tuple[int, int | None] = ports) -> bool:
                published = (ad.get(PORT_ATTR), ad.get(HUB_PORT_ATTR) if tunnel_mode else None)
                return isinstance(published[0], int) and published != ports

            opening = asyncio.create_task(self._open_tunnel(*ports))
            watching = asyncio.create_task(self._follow(moved))
            try:
                await asyncio.wait({opening, watching}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (opening, watching):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task
            if opening.done() and not opening.cancelled() and opening.exception() is None:
                return
            if watching.done() and not watching.cancelled():
                ad = watching.result()  # raises what the job's fate says (held, ended, ...)
                await self._close_tunnel()
                ports = (ad[PORT_ATTR], ad.get(HUB_PORT_ATTR) if tunnel_mode else None)
                self.log.info(
                    "%s: job %s bound other ports %s; following", self._log_name, self.job_id, ports
                )
                continue
            opening.result()  # the tunnel's own failure

    async def _close_tunnel(self) -> None:
        tunnel = getattr(self, "_tunnel", None)
        if tunnel is not None:
            await tunnel.close()
            self._tunnel = None

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

    def _ended_message(self, ad: dict[str, Any]) -> str:
        code = ad.get("ExitCode")
        how = (
            f"exit code {code}"
            if code is not None
            else ad.get("RemoveReason") or f"status {ad.get('JobStatus')}"
        )
        message = f"Job {self.job_id} ended before the notebook was ready ({how})."
        tail = self._error_tail()
        return f"{message} Its error output ends with:\n{tail}" if tail else message

    def _error_tail(self, lines: int = 10) -> str:
        if not self.submit_dir:
            return ""
        try:
            text = (Path(self.submit_dir) / "notebook.err").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    async def _open_tunnel(self, port: int, hub_port: int | None) -> None:
        self.notebook_port, self.hub_api_port = port, hub_port
        self._tunnel = self._make_tunnel(local_port=self.local_port or 0)
        try:
            await self._tunnel.start()
        except TunnelError as err:
            raise SpawnError(f"Could not reach the notebook in job {self.job_id}: {err}") from None
        self.local_port = self._tunnel.local_port
        state = self._watcher().jobs.get(self.job_id)
        ad = state.ad if state is not None and state.ad else {}
        self._attached_to = (ad.get("JobCurrentStartDate"), port)
        self._event(f"Notebook server answering in job {self.job_id} (port {port})", 80)
        self._event(f"Tunnel established (127.0.0.1:{self.local_port} to job {self.job_id})", 90)

    def _make_tunnel(self, local_port: int) -> Tunnel:
        reverse = None
        if self.hub_api_port is not None:
            host, hub_port = self._hub_api()
            reverse = (self.hub_api_port, host, hub_port)
        return Tunnel(
            job_id=self.job_id,
            remote_port=self.notebook_port,
            local_port=local_port,
            reverse=reverse,
            program=self.condor.command("condor_ssh_to_job", [], self.run_as),
            env=dict(self.site.pool.environment),
            max_restarts=self.tunnel_max_restarts,
            ready_timeout=float(self.http_timeout),
        )

    # --- poll, stop ---------------------------------------------------------------

    async def poll(self) -> int | None:
        if not self.job_id:
            return 0
        watcher = self._watcher()
        state = watcher.watch(self.job_id)
        if state.ad is None:
            await watcher.ensure_fresh(max_age=self.queue_poll_interval)
        ad = state.ad
        if ad is None:
            return None  # unknown: never "gone" on a failed or empty look
        status = ad.get("JobStatus")
        if state.gone or status in (REMOVED, COMPLETED):
            code = ad.get("ExitCode")
            return code if isinstance(code, int) and code != 0 else 1 if code is None else 0
        if status == HELD:
            self.log.warning(
                "%s: job %s is held: %s", self._log_name, self.job_id, ad.get("HoldReason")
            )
            return 1
        if status == RUNNING:
            return await self._check_tunnel(ad)
        return None  # idle again (evicted): HTCondor runs it again

    async def _check_tunnel(self, ad: dict[str, Any]) -> int | None:
        """Running job: the tunnel must be up, or be made (hub restart, job started again)."""
        tunnel = getattr(self, "_tunnel", None)
        port, hub_port = ad.get(PORT_ATTR), ad.get(HUB_PORT_ATTR)
        instance = (ad.get("JobCurrentStartDate"), port)
        same_run = instance == getattr(self, "_attached_to", None)
        if tunnel is not None and same_run:
            if not tunnel.failed:
                return None
            self.log.error(
                "%s: tunnel to job %s failed: %s", self._log_name, self.job_id, tunnel.failure
            )
            return 1
        if not isinstance(port, int):
            return None  # started again; its launcher has not published the new ports yet
        if tunnel is not None:
            await tunnel.close()
        self.notebook_port = port
        self.hub_api_port = hub_port if isinstance(hub_port, int) else None
        # keep the local port the proxy routes to, if it is still free
        local = self.local_port if self.local_port and await port_bindable(self.local_port) else 0
        self._tunnel = self._make_tunnel(local_port=local)
        try:
            await self._tunnel.start()
        except TunnelError as err:
            self.log.error("%s: cannot re-attach to job %s: %s", self._log_name, self.job_id, err)
            return 1
        self._attached_to = instance
        self.local_port = self._tunnel.local_port
        self.log.info(
            "%s: tunnel to job %s re-attached on 127.0.0.1:%s",
            self._log_name,
            self.job_id,
            self.local_port,
        )
        return None

    async def get_url(self) -> str:
        """After a re-attach the tunnel may listen on another local port."""
        if self.server is not None and self.local_port:
            self.server.ip = "127.0.0.1"
            self.server.port = self.local_port
        return await super().get_url()

    async def _remove(self, reason: str) -> None:
        if not self.job_id:
            return
        try:
            await self.condor.rm([self.job_id], reason=reason, user=self.run_as)
        except JobNotFound:
            pass  # already gone
        except CondorError as err:
            self.log.error("%s: condor_rm %s failed: %s", self._log_name, self.job_id, err)

    async def _abandon(self) -> None:
        """A spawn that failed: no tunnel, no job left behind."""
        await self._close_tunnel()
        await self._remove("spawn failed")

    async def stop(self, now: bool = False) -> None:
        await self._close_tunnel()
        if not self.job_id:
            return
        watcher = self._watcher()
        if not now:
            await self._hold_for_output(watcher)
        await self._remove("stopped by JupyterHub")
        deadline = time.monotonic() + self.stop_timeout
        state = watcher.watch(self.job_id)
        while time.monotonic() < deadline and not state.gone:
            await watcher.ensure_fresh(max_age=1.0)
            if state.gone:
                break
            await asyncio.sleep(0.5)
        watcher.forget(self.job_id)
        self.clear_state()

    async def _hold_for_output(self, watcher: QueueWatcher) -> None:
        """Hold first: the eviction transfers the work directory back (ON_EXIT_OR_EVICT)."""
        state = watcher.watch(self.job_id)
        await watcher.ensure_fresh(max_age=1.0)
        if state.ad is None or state.ad.get("JobStatus") != RUNNING:
            return
        try:
            await self.condor.hold(
                [self.job_id], reason="stopping: saving the work directory", user=self.run_as
            )
        except CondorError as err:
            self.log.warning("%s: condor_hold %s failed: %s", self._log_name, self.job_id, err)
            return
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            await watcher.ensure_fresh(max_age=0.5)
            ad = state.ad or {}
            if state.gone or (ad.get("JobStatus") == HELD and not ad.get("RemoteHost")):
                return
            await asyncio.sleep(0.5)


__all__ = ["CondorSpawner", "SpawnError"]
