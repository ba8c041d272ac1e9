"""condorsub lab: JupyterLab in a notebook job, on 127.0.0.1 here, without a hub.

The terminal adapter of the spawner's own lifecycle
(:class:`~condorspawner.notebook_job.NotebookJob`): the same ``notebook_job``
(launcher, container choice, limits, runtime limit and grace stop), the same
private file (:class:`~condorspawner.protocol.JobSecret`, with ``hub_api =
"none"`` and a fresh token in ``JUPYTER_TOKEN``: never in the job ad, an
argument or a log), the same submission (the least loaded schedd that answers,
or ``--schedd``; every later command names it), the same following and the
same tunnel, with no way back to a hub. Ctrl-C or SIGTERM ends it as a hub
stop does (hold, wait until the work directory is back, remove).
"""

from __future__ import annotations

import asyncio
import getpass
import html
import re
import secrets
import shutil
import signal
import socket
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from condorspawner.attach import TunnelSettings
from condorspawner.cli.context import callers_tools, job_dir, job_request, site
from condorspawner.cli.exits import FAILED, USAGE, CliError
from condorspawner.errors import JobFailed, SpawnError
from condorspawner.finish import JobNotFinished
from condorspawner.jobad import REMOVED
from condorspawner.jobfiles import JobPaths, job_site_text, notebook_job, write_job_files
from condorspawner.notebook_job import JobRecord, NotebookJob
from condorspawner.protocol import JobSecret
from condorspawner.render import RenderedJob
from condorspawner.request import RequestError
from condorspawner.userfiles import UserFiles, UserFilesError

WORK_DIR = "jupyter-lab"
STOP_TIMEOUT = 60.0  # as the spawner's stop_timeout: the work directory's way home
READY_TIMEOUT = 120.0  # as the spawner's http_timeout: the server's start in the job
OPEN_PAGE = "open.html"  # the page a browser is sent to (the token stays off its command line)
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
    tools = callers_tools(the_site, args.schedd)  # a bad --schedd name stops here, before any file
    request = job_request(args, the_site)
    work = work_directory(args.dir)
    directory = job_dir(args.label or "", "lab")
    if directory.is_relative_to(work):
        shutil.rmtree(directory, ignore_errors=True)
        raise CliError(f"--dir: {work} holds the job files' directory; choose another", USAGE)
    directory.chmod(0o700)  # the private file and the tunnel's ssh_config go here
    paths = JobPaths(submit_dir=directory, work_dir=work)
    job = NotebookJob(
        replace(the_site, pool=tools.pool),  # the caller's own tools, no run-as
        JobRecord(),
        hub_id=lab_hub_id(),
        user=getpass.getuser(),
        server=work.name,
        run_as=None,
        files=UserFiles([]),  # condorsub runs as its user: in-process
        tunnel=TunnelSettings(ready_timeout=READY_TIMEOUT),  # no hub: no way back from the job
        stop_timeout=STOP_TIMEOUT,
        intervals=(2.0, 0.5),
        on_event=tell,
    )
    token = secrets.token_urlsafe(32)
    secret = JobSecret(
        env={"JUPYTER_TOKEN": token},
        rendezvous=job.new_spawn(directory, uuid.uuid4().hex),
        site=job_site_text(the_site),
        hub_api="none",
        shared_account=the_site.notebook.shared_job_accounts,
    )
    try:
        rendered = notebook_job(
            the_site,
            request,
            paths,
            python=args.python,
            hub_id=job.hub_id,
            user=job.user,
            server=job.server,
            spawn=job.record.spawn_id,
        )
    except RequestError as err:
        shutil.rmtree(directory, ignore_errors=True)
        raise CliError(str(err), USAGE) from None
    session = LabSession(job, paths, rendered, secret, token, args.schedd)
    return asyncio.run(session.main(request.summary(), open_browser=args.open))


def exit_code(failed: JobFailed) -> int:
    """0 only when the server ended by itself with 0 (a held job failed, whatever its
    ExitCode said before the hold)."""
    return 0 if failed.ended and failed.ad.get("ExitCode") == 0 else FAILED


def tell(message: str, phase: int, again: bool) -> None:
    """The job's news on the terminal, each once (a phase that goes on is not repeated)."""
    if not again:
        say(message)


class LabSession:
    """One JupyterLab job, from submission to its work directory back home (the terminal
    adapter of :class:`~condorspawner.notebook_job.NotebookJob`)."""

    def __init__(
        self,
        job: NotebookJob,
        paths: JobPaths,
        rendered: RenderedJob,
        secret: JobSecret,
        token: str,
        chosen: str | None = None,
    ) -> None:
        self.job, self.paths, self.rendered = job, paths, rendered
        self.secret, self.token = secret, token
        self.chosen = chosen  # --schedd; else the least loaded, at submission
        self.stopping = asyncio.Event()
        self.submitted = False

    def _signal(self) -> None:
        if self.stopping.is_set():
            say("still bringing the work directory back; please wait")
        self.stopping.set()

    async def main(self, summary: str, open_browser: bool = False) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signal)
        job = self.job
        try:
            await write_job_files(job.files, self.paths, self.rendered, self.secret.dumps())
        except UserFilesError as err:
            raise CliError(f"cannot write the job's files: {err}") from None
        try:
            await job.choose_schedd(self.chosen)
            await job.submit(self.paths.submit_file, summary)
        except SpawnError as err:
            await self._tidy()  # no job: its private file goes at once
            raise CliError(str(err)) from None
        say("waiting for a slot (Ctrl-C to give up)")
        try:
            code = await self._session(open_browser)
        except JobFailed as err:  # said before the job's end is
            say(str(err))
            code = exit_code(err)
        except CliError as err:
            say(str(err))
            code = err.code
        finally:
            await self._end()
        return code

    async def _session(self, open_browser: bool) -> int:
        job = self.job
        url = None
        while True:
            ad = await job.follow_to_run(pending=True, stop=self.stopping)
            job.settle()  # the queue at the normal interval again
            if ad is None:
                return 0
            port = await job.connect(ad, stop=self.stopping)
            if port is None or self.stopping.is_set():
                return 0
            if url is None:
                url = f"http://127.0.0.1:{port}/lab?token={self.token}"
                print(url, flush=True)
                say(f"JupyterLab in job {job.record.job_id}, working in {self.paths.work_dir}")
                say("Ctrl-C ends the job and brings the work directory back")
                if open_browser:
                    await self._open(url)
            elif f"127.0.0.1:{port}/" not in url:
                url = f"http://127.0.0.1:{port}/lab?token={self.token}"
                print(url, flush=True)
            else:
                say("the tunnel is back, at the same URL")
            ad = await job.follow(lambda ad: not job.reaches(ad), stop=self.stopping)
            if ad is None:
                return 0
            if job.attachment.failure is not None:
                raise CliError(f"the tunnel gave up: {job.attachment.failure}")
            say(f"job {job.record.job_id} was evicted; it will run again with its work directory")

    async def _open(self, url: str) -> None:
        """A browser on a 0600 page that redirects to the URL: the token stays off the
        browser's command line, which every user of this machine can read."""
        import webbrowser

        page = self.paths.submit_dir / OPEN_PAGE
        target = html.escape(url, quote=True)
        text = f'<meta http-equiv="refresh" content="0; url={target}"><a href="{target}">lab</a>'
        await self.job.files.prepare(dirs=[], files=[(str(page), text, 0o600)])
        if not await asyncio.to_thread(webbrowser.open, page.as_uri()):
            say("no browser found here; open the URL above")

    async def _end(self) -> None:
        """No tunnel, no job: the job finished as a hub stop does, its files home first."""
        job = self.job
        await job.close_tunnel()
        known = job.watcher().jobs.get(job.record.job_id)
        if known is not None and known.status == REMOVED:  # by someone else: nothing comes back
            say(f"job {job.record.job_id} was removed; HTCondor brings nothing back from it")
            return await self._tidy()
        say(f"ending job {job.record.job_id}; bringing {self.paths.work_dir.name} back")
        try:
            await job.finish("stopped by condorsub lab")
        except JobNotFinished as err:
            raise CliError(str(err)) from None
        finally:
            await self._tidy()
        say(f"job {job.record.job_id} ended; the work directory is back in {self.paths.work_dir}")

    async def _tidy(self) -> None:
        """The watcher stopped; the private file and leftover ssh sessions gone."""
        await self.job.watcher().stop()
        await self.job.tidy(OPEN_PAGE)
