"""condorsub lab: JupyterLab in a notebook job, on 127.0.0.1 here, without a hub.

The job is the spawner's own: notebook.sub through the same ``notebook_job``
(the launcher, the container choice, the limits, the runtime limit and its
grace stop), the same private file (:class:`~condorspawner.protocol.JobSecret`,
with ``hub_api = "none"`` and a fresh token in ``JUPYTER_TOKEN``: never in the
job ad, an argument or a log), the same rendezvous directory and the same
tunnel (:class:`~condorspawner.attach.Attachment`, with no way back to a
hub). Ctrl-C or SIGTERM ends it as a hub stop does
(:func:`~condorspawner.finish.finish_job`: hold, wait until the work
directory is back, remove). On a site with several schedds the job goes to the
least loaded one that answers (:func:`~condorspawner.schedds.submit_somewhere`,
as ``condorsub submit``), and every later command (the queue watcher, the
tunnel's ``condor_ssh_to_job``, hold and remove) names that schedd.

The work directory (``./jupyter-lab``, or ``--dir``) goes into the job and
comes back when the session ends; the job's files (description, wrapper,
logs, the private file, the tunnel's ssh_config) are in a private directory
under ``./condorsub-jobs/`` (``$CONDORSUB_JOBS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import html
import re
import secrets
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from condorspawner.attach import AttachError, Attachment
from condorspawner.cli.context import condor, job_dir, job_request, site
from condorspawner.cli.exits import FAILED, USAGE, CliError
from condorspawner.condor import Condor, CondorError, CondorTimeout
from condorspawner.finish import JobNotFinished, finish_job
from condorspawner.jobad import REMOVED, RUNNING, SPAWN_ATTR, id_of, is_, run_dated
from condorspawner.jobfiles import JobPaths, job_site_text, notebook_job, write_job_files
from condorspawner.protocol import JobSecret, Rendezvous, job_start
from condorspawner.render import RenderedJob
from condorspawner.request import RequestError
from condorspawner.schedds import submit_somewhere
from condorspawner.site import Site
from condorspawner.userfiles import UserFiles, UserFilesError
from condorspawner.watcher import (
    JobEnded,
    JobHeld,
    QueueWatcher,
    StillQueued,
    follow_job,
)

WORK_DIR = "jupyter-lab"
STOP_TIMEOUT = 60.0  # as the spawner's stop_timeout: the work directory's way home
READY_TIMEOUT = 120.0  # as the spawner's http_timeout: the server's start in the job
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}\Z")


def say(text: str) -> None:
    print(f"condorsub: {text}", file=sys.stderr, flush=True)


def lab_hub_id() -> str:
    """The mark the job carries where a hub's id would be (``CondorSpawnerHub``)."""
    return f"condorsub-lab@{socket.getfqdn()}"


def work_directory(given: str | None) -> Path:
    """The directory that travels with the job (made if missing): it goes by its name."""
    path = Path(given or WORK_DIR).resolve()
    if not _PLAIN_NAME.match(path.name):
        raise CliError(
            f"--dir: {given!r}: the directory's name must be letters, digits, '.', '_', '-'",
            USAGE,
        )
    if path.exists() and not path.is_dir():
        raise CliError(f"--dir: {given or WORK_DIR} is not a directory", USAGE)
    return path


def lab(args: Any) -> int:
    """Submit, tunnel, print the URL; on Ctrl-C end the job and bring the work directory back."""
    the_site = site()
    tools = condor(the_site, args.schedd)  # a bad --schedd name stops here, before any file
    request = job_request(args, the_site)
    work = work_directory(args.dir)
    directory = job_dir(args.label or "", "lab")
    if directory.is_relative_to(work):
        shutil.rmtree(directory, ignore_errors=True)
        raise CliError(f"--dir: {work} holds the job files' directory; choose another", USAGE)
    directory.chmod(0o700)  # the private file and the tunnel's ssh_config go here
    paths = JobPaths(submit_dir=directory, work_dir=work)
    token = secrets.token_urlsafe(32)
    secret = JobSecret(
        env={"JUPYTER_TOKEN": token},
        rendezvous=Rendezvous.new(),
        site=job_site_text(the_site),
        hub_api="none",
        shared_account=the_site.notebook.shared_job_accounts,
    )
    spawn = uuid.uuid4().hex
    try:
        job = notebook_job(
            the_site,
            request,
            paths,
            python=args.python,
            hub_id=lab_hub_id(),
            user=getpass.getuser(),
            server=work.name,
            spawn=spawn,
        )
    except RequestError as err:
        shutil.rmtree(directory, ignore_errors=True)
        raise CliError(str(err), USAGE) from None
    session = LabSession(the_site, tools, paths, job, secret, token, spawn, args.schedd)
    return asyncio.run(session.main(open_browser=args.open))


class LabSession:
    """One JupyterLab job, from submission to its work directory back home."""

    def __init__(
        self,
        the_site: Site,
        tools: Condor,
        paths: JobPaths,
        job: RenderedJob,
        secret: JobSecret,
        token: str,
        spawn: str,
        chosen: str | None = None,
    ) -> None:
        self.site, self.condor, self.paths, self.job = the_site, tools, paths, job
        self.secret, self.token, self.spawn = secret, token, spawn
        self.files = UserFiles([])  # condorsub runs as its user: in-process
        self.hub_id = lab_hub_id()
        self.job_id: str | None = None
        self.chosen = chosen  # --schedd; else the least loaded, at submission
        self.schedd: str | None = None  # where it went (None: the site's only one)
        self.attachment: Attachment | None = None
        self.stopping = asyncio.Event()
        self.watcher: QueueWatcher | None = None

    def _signal(self) -> None:
        if self.stopping.is_set():
            say("still bringing the work directory back; please wait")
        self.stopping.set()

    async def main(self, open_browser: bool = False) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signal)
        try:
            await write_job_files(self.files, self.paths, self.job, self.secret.dumps())
        except UserFilesError as err:
            raise CliError(f"cannot write the job's files: {err}") from None
        try:
            self.job_id = await self._submit()
        except CliError:
            await self._tidy()  # no job: its private file goes at once
            raise
        self.watcher = QueueWatcher(self.condor, self.hub_id, interval=2.0, fast_interval=0.5)
        try:
            code = await self._session(open_browser)
        except CliError as err:  # said before the job's end is
            say(str(err))
            code = err.code
        finally:
            await self._end()
        return code

    async def _submit(self) -> str:
        """The job id, on the least loaded schedd that answers; from then on ``self.condor``
        names that schedd (the job stays with it for life)."""
        try:
            self.schedd, job_id = await submit_somewhere(
                self.condor, self._submit_to, chosen=self.chosen
            )
        except CondorError as err:
            raise CliError(f"condor_submit failed: {err}") from None
        self.condor = self.condor.for_schedd(self.schedd)
        return job_id

    async def _submit_to(self, tools: Condor) -> str:
        try:
            return (await tools.submit(str(self.paths.submit_file), cwd="/")).job_id
        except CondorTimeout:
            found = await self._find_by_spawn_id(tools)
            if found is None:
                raise
            return found

    async def _find_by_spawn_id(self, tools: Condor) -> str | None:
        """The job, when condor_submit's answer was lost (as the spawner finds its own)."""
        with contextlib.suppress(CondorError):
            ads = await tools.q(
                constraint=is_(SPAWN_ATTR, self.spawn), attributes=("ClusterId", "ProcId")
            )
            if ads:
                return id_of(ads[0])
        return None

    async def _session(self, open_browser: bool) -> int:
        where = f" to schedd {self.schedd}" if self.schedd else ""
        say(f"job {self.job_id} submitted{where}; waiting for a slot (Ctrl-C to give up)")
        url = None
        while True:
            ad = await self._follow(
                lambda ad: ad.get("JobStatus") == RUNNING and run_dated(ad), pending=True
            )
            if ad is None:
                return 0
            host = ad.get("RemoteHost", "a worker")
            say(f"job {self.job_id} running on {host}; opening the tunnel")
            run = job_start(ad)
            port = await self._attach(run)
            if port is None:
                return 0
            if url is None:
                url = f"http://127.0.0.1:{port}/lab?token={self.token}"
                print(url, flush=True)
                say(f"JupyterLab in job {self.job_id}, working in {self.paths.work_dir}")
                say("Ctrl-C ends the job and brings the work directory back")
                if open_browser:
                    await self._open(url)
            elif f"127.0.0.1:{port}/" not in url:
                url = f"http://127.0.0.1:{port}/lab?token={self.token}"
                print(url, flush=True)
            else:
                say("the tunnel is back, at the same URL")
            ad = await self._follow(lambda ad, run=run: self._interrupted(ad, run))
            if ad is None:
                return 0
            if self.attachment.failure is not None:
                raise CliError(f"the tunnel gave up: {self.attachment.failure}")
            say(f"job {self.job_id} was evicted; it will run again with its work directory")

    def _interrupted(self, ad: dict[str, Any], run: int | None) -> bool:
        """The tunnel gave up, or this run of the job is over (an eviction)."""
        assert self.attachment is not None
        failed = self.attachment.failure is not None
        return failed or ad.get("JobStatus") != RUNNING or job_start(ad) != run

    async def _attach(self, run: int | None) -> int | None:
        """The tunnel to this run's server (its local port), while following the job."""
        if self.attachment is None:
            self.attachment = Attachment(
                job_id=self.job_id,
                rendezvous=self.secret.rendezvous,
                program=self.condor.command("condor_ssh_to_job", []),
                hub_api=None,  # no hub: no way back from the job
                env=dict(self.site.pool.environment),
                ready_timeout=READY_TIMEOUT,
                config_writer=self._write_tunnel_config,
            )
        opening = asyncio.create_task(self.attachment.open(run))
        try:
            await self._follow(lambda ad: False, task=opening)
        finally:
            if not opening.done():
                opening.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await opening
        if self.stopping.is_set():
            return None
        try:
            return opening.result()
        except AttachError as err:
            raise CliError(str(err)) from None

    async def _follow(
        self,
        done: Callable[[dict[str, Any]], bool],
        *,
        task: asyncio.Task[Any] | None = None,
        pending: bool = False,
    ) -> dict[str, Any] | None:
        """Follow the job until ``done(ad)``, ``task`` ends or a signal (None then); raise
        when it is held or ends, or waits in the queue past the site's start timeout."""
        assert self.watcher is not None and self.job_id is not None
        state = self.watcher.watch(self.job_id, pending=pending)

        def idle(reason: str, new: bool) -> None:
            if new:
                say(f"job {self.job_id} is queued: {reason}")

        try:
            return await follow_job(
                state,
                done,
                start_timeout=self.site.notebook.start_timeout,
                on_idle=idle,
                stop=self.stopping,
                task=task,
            )
        except JobHeld as err:
            raise CliError(f"HTCondor held job {self.job_id}: {err.reason}") from None
        except JobEnded as err:
            code = 0 if err.ad.get("ExitCode") == 0 else FAILED
            raise CliError(self._ended(err.ad), code) from None
        except StillQueued as err:
            raise CliError(
                f"job {self.job_id} was still waiting after {err.timeout} s "
                f"({err.reason}); it was removed"
            ) from None
        finally:
            if pending:
                self.watcher.settle(self.job_id)  # the queue at the normal interval again

    def _ended(self, ad: dict[str, Any]) -> str:
        code = ad.get("ExitCode")
        how = f"exit code {code}" if code is not None else ad.get("RemoveReason") or "removed"
        message = f"job {self.job_id} ended ({how})"
        if code == 0:
            return f"{message}: the server stopped before the job's runtime limit"
        err = self.paths.submit_dir / "notebook.err"
        with contextlib.suppress(OSError):
            tail = err.read_text(errors="replace").strip().splitlines()[-3:]
            if tail:
                message += "; its error output ends with: " + " | ".join(tail)
        return message

    async def _write_tunnel_config(self, text: str) -> str:
        """The tunnel's forwards in a 0600 file (ssh -F): off every command line."""
        path = str(self.paths.submit_dir / "tunnel.ssh_config")
        await self.files.prepare(dirs=[], files=[(path, text, 0o600)])
        return path

    async def _open(self, url: str) -> None:
        """A browser on a 0600 page that redirects to the URL: the token stays off the
        browser's command line, which every user of this machine can read."""
        import webbrowser

        page = self.paths.submit_dir / "open.html"
        target = html.escape(url, quote=True)
        text = f'<meta http-equiv="refresh" content="0; url={target}"><a href="{target}">lab</a>'
        await self.files.prepare(dirs=[], files=[(str(page), text, 0o600)])
        if not await asyncio.to_thread(webbrowser.open, page.as_uri()):
            say("no browser found here; open the URL above")

    async def _end(self) -> None:
        """No tunnel, no job: the job finished as a hub stop does, its files home first."""
        assert self.watcher is not None
        if self.attachment is not None:
            await self.attachment.close()
        known = self.watcher.jobs.get(self.job_id)
        if known is not None and known.status == REMOVED:  # by someone else: nothing comes back
            say(f"job {self.job_id} was removed; HTCondor brings nothing back from a removed job")
            return await self._tidy()
        say(f"ending job {self.job_id}; bringing {self.paths.work_dir.name} back")
        try:
            await finish_job(
                self.condor,
                self.watcher,
                self.job_id,
                user=None,
                reason="stopped by condorsub lab",
                timeout=STOP_TIMEOUT,
            )
        except JobNotFinished as err:
            raise CliError(str(err)) from None
        finally:
            await self._tidy()
        say(f"job {self.job_id} ended; the work directory is back in {self.paths.work_dir}")

    async def _tidy(self) -> None:
        """The watcher stopped; the private file and leftover ssh sessions gone."""
        if self.watcher is not None:
            await self.watcher.stop()
        with contextlib.suppress(UserFilesError):
            await self.files.remove(
                str(self.paths.secret), str(self.paths.submit_dir / "open.html")
            )
            await self.files.sweep_ssh_sessions()
