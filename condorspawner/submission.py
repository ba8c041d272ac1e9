"""Submitting a server's job: never two jobs for one server, and no job lost with its id."""

from __future__ import annotations

import contextlib
import uuid

from condorspawner.condor import Condor, CondorError, CondorTimeout, ScheddUnavailable
from condorspawner.errors import SpawnError
from condorspawner.finish import JobNotFinished, finish_job
from condorspawner.jobad import HUB_ATTR, SERVER_ATTR, SPAWN_ATTR, USER_ATTR, id_of, is_
from condorspawner.jobfiles import JobPaths, job_site_text, notebook_job, write_job_files
from condorspawner.progress import SUBMITTED
from condorspawner.protocol import JobSecret, Rendezvous
from condorspawner.request import JobRequest, RequestError
from condorspawner.schedds import NoSchedd, ScheddChooser, multi
from condorspawner.userfiles import UserFilesError
from condorspawner.watcher import QueueWatcher

TOKEN_AUTHZ = ("READ", "WRITE")  # condor_q needs READ; submit, rm, hold, release WRITE


class SubmissionMixin:
    """The job files, the submission as the user, and what an earlier spawn left."""

    def _marks(self, **more: str) -> str:
        """A constraint for this server's jobs. The marks are public and anybody can set
        them, so the job's ``Owner`` (set by the schedd) must be the user too."""
        marks = {HUB_ATTR: self.hub_id, USER_ATTR: self.user.name, SERVER_ATTR: self.name or ""}
        if self.run_as:
            marks["Owner"] = self.run_as
        marks.update(more)
        return " && ".join(is_(attr, value) for attr, value in marks.items())

    async def _schedds_to_search(self) -> list[tuple[str | None, bool]]:
        """(schedd, must answer) where an earlier spawn's job may be: the saved one must
        answer; with several schedds the others are searched when they answer."""
        if not multi(self.site.pool):
            return [(self.schedd, True)]
        try:
            names = [str(ad.get("Name")) for ad in await self._chooser().ads()]
        except CondorError as err:
            raise SpawnError(f"The collector does not answer ({err}); try again later.") from None
        saved = [(self.schedd, True)] if self.schedd else []
        return saved + [(name, False) for name in names if name != self.schedd]

    async def _settle_leftovers(self) -> None:
        """Never two jobs for one server: end (safely) what an earlier spawn left."""
        found = []
        for schedd, must in await self._schedds_to_search():
            try:
                ads = (
                    await Condor(self.site.pool)
                    .for_schedd(schedd)
                    .q(constraint=self._marks(), attributes=("ClusterId", "ProcId"), all_users=True)
                )
            except CondorError as err:
                if must and self.job_id:  # never a second job while this one may run
                    raise SpawnError(
                        f"Job {self.job_id} of an earlier start of this server may still run "
                        f"on {schedd or 'the schedd'}, which does not answer ({err}); no new "
                        "job is started until it can be ended. Try again later."
                    ) from None
                if must:
                    raise SpawnError(
                        f"The schedd does not answer ({err}); try again later."
                    ) from None
                continue
            found += [(schedd, ad) for ad in ads]
        for schedd, ad in found:
            self.schedd = schedd
            left = id_of(ad)
            self._event(f"Ending job {left}, left by an earlier start of this server", 5)
            try:
                await finish_job(
                    self.condor,
                    self._watcher(),
                    left,
                    user=self.run_as,
                    reason="replaced by a new server",
                    timeout=self.stop_timeout,
                )
            except JobNotFinished as err:
                raise SpawnError(str(err)) from None
            self._watcher().forget(left)
        self._forget_job()

    async def _submit(self, request: JobRequest, paths: JobPaths) -> None:
        site = self.site
        meeting = Rendezvous.new()
        self.nonce, self.spawn_id = meeting.nonce, uuid.uuid4().hex
        self.submit_dir = str(paths.submit_dir)
        self.schedd = await self._choose_schedd()
        secret = JobSecret(
            env=self._job_environment(),
            rendezvous=meeting,
            site=job_site_text(site),
            hub_api=site.notebook.hub_api,
            token=await self._job_token(request) if site.notebook.submit_token else None,
            shared_account=site.notebook.shared_job_accounts,
        )
        try:
            job = notebook_job(
                site,
                request,
                paths,
                python=self.job_python,
                hub_id=self.hub_id,
                user=self.user.name,
                server=self.name or "",
                spawn=self.spawn_id,
                launcher_args=self.launcher_args,
            )
        except RequestError as err:
            raise SpawnError(f"Invalid server options: {err}") from None
        try:
            await write_job_files(self.files, paths, job, secret.dumps())
        except UserFilesError as err:
            raise SpawnError(f"Cannot write the job's files in your directories: {err}") from None
        self._persist_state()
        try:
            while True:
                try:
                    result = await self.condor.submit(
                        str(paths.submit_file),
                        user=self.run_as,
                        cwd="/",  # root never enters a user's path
                    )
                    break
                except ScheddUnavailable:
                    if not self.schedd:
                        raise
                    self._chooser().mark_down(self.schedd)  # on to the next that answers
                    self.schedd = await self._choose_schedd()
                    self._persist_state()
            self.job_id = result.job_id
        except CondorTimeout as err:
            self.job_id = await self._find_by_spawn_id()
            if self.job_id is None:
                raise SpawnError(f"condor_submit failed: {err}") from None
        except CondorError as err:
            raise SpawnError(f"condor_submit failed: {err}") from None
        self._persist_state()
        self._watcher().watch(self.job_id, pending=True)
        self._event(f"Submitted as HTCondor job {self.job_id} ({request.summary()})", SUBMITTED)

    def _chooser(self) -> ScheddChooser:
        return ScheddChooser.shared(Condor(self.site.pool))

    async def _choose_schedd(self) -> str | None:
        """The least loaded schedd that answers (None: the site names one schedd)."""
        if not multi(self.site.pool):
            return None
        failing = QueueWatcher.failing(self.site.pool.collector, self.hub_id)
        try:
            name = await self._chooser().choose(failing=failing)
        except NoSchedd as err:
            raise SpawnError(f"Cannot submit now: {err}") from None
        self.log.info("%s: submitting to schedd %s (least loaded)", self._log_name, name)
        return name

    async def _job_token(self, request: JobRequest) -> str:
        """An IDTOKEN fetched as the user: no longer than the job may run, READ and WRITE
        only. A secret: it goes into the private file and nowhere else (no log)."""
        try:
            return await self.condor.token_fetch(
                lifetime=request.runtime_s, authz=TOKEN_AUTHZ, user=self.run_as
            )
        except CondorError as err:
            raise SpawnError(f"Cannot fetch an HTCondor token for the job: {err}") from None

    async def _find_by_spawn_id(self) -> str | None:
        """The job this spawn submitted, when condor_submit's answer was lost (None also
        when the schedd does not answer)."""
        with contextlib.suppress(CondorError):
            return await self._job_of_spawn()
        return None

    async def _job_of_spawn(self) -> str | None:
        """The queued job carrying this spawn's mark, or None; raises :class:`CondorError`
        when the schedd does not answer."""
        ads = await self.condor.q(
            constraint=self._marks(**{SPAWN_ATTR: self.spawn_id}),
            attributes=("ClusterId", "ProcId"),
            all_users=True,
        )
        return id_of(ads[0]) if ads else None

    def _job_environment(self) -> dict[str, str]:
        """What the notebook needs from the hub (token included): into the private file."""
        env = self.get_env()
        keep = set(self.environment)
        return {k: v for k, v in env.items() if k.startswith(("JUPYTERHUB_", "JPY_")) or k in keep}
