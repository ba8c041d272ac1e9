"""Submitting a server's job: never two jobs for one server, and no job lost with its id."""

from __future__ import annotations

import contextlib
import uuid

from condorspawner.condor import CondorError, CondorTimeout
from condorspawner.errors import SpawnError
from condorspawner.finish import JobNotFinished, finish_job
from condorspawner.jobfiles import JobPaths, job_site_text, notebook_job, write_job_files
from condorspawner.progress import SUBMITTED
from condorspawner.protocol import (
    HUB_ATTR,
    SERVER_ATTR,
    SPAWN_ATTR,
    USER_ATTR,
    JobSecret,
    Rendezvous,
)
from condorspawner.request import JobRequest, RequestError
from condorspawner.userfiles import UserFilesError


class SubmissionMixin:
    """The job files, the submission as the user, and what an earlier spawn left."""

    def _marks(self, **more: str) -> str:
        """A constraint for this server's jobs. The marks are public and anybody can set
        them, so the job's ``Owner`` (set by the schedd) must be the user too."""
        import classad2

        marks = {HUB_ATTR: self.hub_id, USER_ATTR: self.user.name, SERVER_ATTR: self.name or ""}
        if self.run_as:
            marks["Owner"] = self.run_as
        marks.update(more)
        # =?= : ClassAd's == ignores case, and "Alice" is not "alice"
        return " && ".join(f"{attr} =?= {classad2.quote(value)}" for attr, value in marks.items())

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
            result = await self.condor.submit(
                str(paths.submit_file),
                user=self.run_as,
                cwd="/",  # root never enters a user's path
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
        self._event(f"Submitted as HTCondor job {self.job_id} ({request.summary()})", SUBMITTED)

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
