"""Ending a job against the real watcher, with a schedd whose tools a test scripts."""

from __future__ import annotations

from condorspawner.condor import CondorError
from condorspawner.finish import finish_job
from condorspawner.watcher import QueueWatcher


class ScriptedSchedd:
    """condor_q answers with the jobs it holds; condor_history always fails; hold and rm
    act on the jobs (a held job's files are back at once)."""

    def __init__(self, jobs: dict[str, int]) -> None:
        self.jobs = dict(jobs)
        self.calls: list[str] = []

    async def q(self, job_ids=(), *, constraint=None, attributes=None, all_users=False):
        self.calls.append("condor_q")
        ads = []
        for job_id, status in self.jobs.items():
            cluster, proc = job_id.split(".")
            ad = {"ClusterId": int(cluster), "ProcId": int(proc), "JobStatus": status}
            if status == 2:
                ad["RemoteHost"] = "slot1_1@vm"
            ads.append(ad)
        return ads

    async def history(self, job_ids=(), *, constraint=None, attributes=None, limit=None):
        self.calls.append("condor_history")
        raise CondorError(["condor_history"], 1, "Failed to connect to history")

    async def hold(self, job_ids, *, reason=None, user=None):
        self.calls.append("condor_hold")
        for job_id in job_ids:
            self.jobs[job_id] = 5
        return ""

    async def rm(self, job_ids, *, reason=None, user=None):
        self.calls.append("condor_rm")
        for job_id in job_ids:
            self.jobs.pop(job_id, None)
        return ""


async def test_a_failing_history_ends_only_what_left_the_queue_in_doubt():
    """Issue 23.2: job 1.0 left the queue and condor_history fails; job 2.0 still runs.
    The queue answers, so 2.0 is known: finish_job holds and removes it."""
    schedd = ScriptedSchedd({"1.0": 2, "2.0": 2})
    watcher = QueueWatcher(schedd, "hub", interval=0.05, fast_interval=0.05)
    watcher.watch("1.0")
    watcher.watch("2.0")
    await watcher.refresh()
    del schedd.jobs["1.0"]  # it left the queue; its history cannot be read
    await watcher.refresh()
    assert "condor_history" in schedd.calls
    assert watcher.last_error is None  # the queue answered: the schedd is not down
    assert watcher.jobs["1.0"].in_doubt and not watcher.jobs["2.0"].in_doubt
    await finish_job(schedd, watcher, "2.0", user="ann", reason="stop", timeout=3, poll=0.05)
    assert "2.0" not in schedd.jobs
    assert schedd.calls.count("condor_hold") == 1 and schedd.calls.count("condor_rm") == 1
    await watcher.stop()
