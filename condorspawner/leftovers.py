"""What an earlier start of a server left: its job ended before a new one, or adopted.

Never two jobs for one server: before a submission every schedd where an
earlier job of this server may be is searched by the job's marks (and its
``Owner``), and what is found is ended safely. A spawn whose ``condor_submit``
answer never came (the hub stopped in between) is found by its spawn's mark
and followed (issue 23.5).
"""

from __future__ import annotations

from condorspawner.condor import Condor, CondorError
from condorspawner.errors import SpawnError
from condorspawner.finish import JobNotFinished, finish_job
from condorspawner.jobad import id_of
from condorspawner.notebook_job import NotebookJob
from condorspawner.progress import Phase
from condorspawner.schedds import multi


async def schedds_to_search(job: NotebookJob) -> list[tuple[str | None, bool]]:
    """(schedd, must answer) where an earlier start's job may be: the saved one must
    answer; with several schedds the others are searched when they answer."""
    saved = job.record.schedd
    if not multi(job.site.pool):
        return [(saved, True)]
    try:
        names = [str(ad.get("Name")) for ad in await job.chooser().ads()]
    except CondorError as err:
        raise SpawnError(f"The collector does not answer ({err}); try again later.") from None
    return ([(saved, True)] if saved else []) + [(n, False) for n in names if n != saved]


async def settle_leftovers(job: NotebookJob) -> None:
    """End (safely) every job an earlier start of this server left; then a fresh record."""
    record, found = job.record, []
    for schedd, must in await schedds_to_search(job):
        try:
            ads = (
                await Condor(job.site.pool)
                .for_schedd(schedd)
                .q(constraint=job.marks(), attributes=("ClusterId", "ProcId"), all_users=True)
            )
        except CondorError as err:
            if must and record.job_id:  # never a second job while this one may run
                raise SpawnError(
                    f"Job {record.job_id} of an earlier start of this server may still run "
                    f"on {schedd or 'the schedd'}, which does not answer ({err}); no new "
                    "job is started until it can be ended. Try again later."
                ) from None
            if must:
                raise SpawnError(f"The schedd does not answer ({err}); try again later.") from None
            continue
        found += [(schedd, ad) for ad in ads]
    for schedd, ad in found:
        record.schedd = schedd
        left = id_of(ad)
        job.on_event(
            f"Ending job {left}, left by an earlier start of this server", Phase.SETTLING, False
        )
        try:
            await finish_job(
                job.condor,
                job.watcher(),
                left,
                user=job.run_as,
                reason="replaced by a new server",
                timeout=job.stop_timeout,
            )
        except JobNotFinished as err:
            raise SpawnError(str(err)) from None
        job.watcher().forget(left)
    record.forget()


async def adopt_submitted(job: NotebookJob) -> bool:
    """The job of a spawn saved without its ``condor_submit`` answer, into the record.
    False: there is none (the submission never made it); True with no ``job_id``: the
    schedd does not answer, so one may be there."""
    record = job.record
    if not record.spawn_id:
        return False
    try:
        job_id = await job.job_of_spawn()
    except CondorError as err:
        job.log.warning("%s: looking for the job of spawn %s: %s", job.name, record.spawn_id, err)
        return True
    if job_id is None:
        return False
    job.log.info("%s: job %s was submitted before the hub stopped; following it", job.name, job_id)
    record.job_id = job_id
    job.persist()
    return True
