"""The shared queue watcher: one condor_q per interval for any number of jobs."""

import asyncio

import pytest

from condorspawner.condor import ScheddUnavailable
from condorspawner.watcher import QueueWatcher


class CountingCondor:
    """Answers like condor_q/condor_history would and counts the calls (no schedd needed)."""

    def __init__(self, ads):
        self.ads = ads
        self.q_calls = 0
        self.history_calls = 0
        self.failing = False
        self.history_ads = []

    async def q(self, **kwargs):
        self.q_calls += 1
        if self.failing:
            raise ScheddUnavailable(["condor_q"], 1, "-- Failed to fetch ads from: <x> : y")
        assert kwargs["all_users"] and "CondorSpawnerHub" in kwargs["constraint"]
        return list(self.ads)

    async def history(self, **kwargs):
        self.history_calls += 1
        return list(self.history_ads)


def ads(n):
    return [{"ClusterId": c, "ProcId": 0, "JobStatus": 2} for c in range(1, n + 1)]


async def test_one_query_per_interval_whatever_the_number_of_jobs():
    condor = CountingCondor(ads(100))
    watcher = QueueWatcher(condor, "hub", interval=0.2, fast_interval=0.05, jitter=0.0)
    for c in range(1, 101):
        watcher.watch(f"{c}.0")
    await asyncio.sleep(0.05)
    start = condor.q_calls
    for _ in range(20):  # 100 spawners polling every 50 ms must not add queries
        for c in range(1, 101):
            watcher.watch(f"{c}.0")
        await asyncio.sleep(0.05)
    intervals = 1.0 / 0.2
    assert condor.q_calls - start <= intervals + 1
    assert all(watcher.jobs[f"{c}.0"].status == 2 for c in range(1, 101))
    await watcher.stop()


async def test_faster_while_a_spawn_waits():
    condor = CountingCondor(ads(1))
    watcher = QueueWatcher(condor, "hub", interval=10.0, fast_interval=0.05, jitter=0.0)
    watcher.watch("1.0", pending=True)
    await asyncio.sleep(0.5)
    assert condor.q_calls >= 5
    watcher.settle("1.0")
    await asyncio.sleep(0.1)
    settled = condor.q_calls
    await asyncio.sleep(0.5)
    assert condor.q_calls - settled <= 1
    await watcher.stop()


async def test_failures_are_unknown_and_the_history_says_gone():
    condor = CountingCondor(ads(2))
    watcher = QueueWatcher(condor, "hub", interval=0.05, jitter=0.0)
    one, two = watcher.watch("1.0"), watcher.watch("2.0")
    await asyncio.sleep(0.1)
    condor.failing = True
    await asyncio.sleep(0.3)
    assert watcher.last_error and one.status == 2 and not one.gone  # unknown, not gone
    condor.failing = False
    condor.ads = ads(1)  # job 2 left the queue ...
    await asyncio.sleep(0.2)
    assert not two.gone  # ... but the history does not know it yet: still not gone
    assert two.missing_since is not None  # in neither queue nor history: marked
    condor.history_ads = [{"ClusterId": 2, "ProcId": 0, "JobStatus": 4, "ExitCode": 0}]
    await asyncio.sleep(0.8)  # the history is asked again after a growing pause
    assert two.missing_since is None
    assert two.gone and two.status == 4 and one.status == 2
    await watcher.stop()


async def test_a_job_in_neither_queue_nor_history_is_not_looked_up_every_interval():
    condor = CountingCondor([])
    watcher = QueueWatcher(condor, "hub", interval=0.02, jitter=0.0)
    ghost = watcher.watch("9.0")
    await asyncio.sleep(1.0)  # about 50 intervals
    assert ghost.missing_since is not None and not ghost.gone
    assert condor.q_calls > 30 and condor.history_calls <= 7, (
        condor.q_calls,
        condor.history_calls,
    )
    await watcher.stop()


@pytest.mark.both_pools
def test_the_schedd_sends_its_clock_with_the_watchers_query(pool):
    """Issue 23.7 measures an evicted job's wait on the schedd's clock: the query the
    watcher makes gets ``ServerTime`` with every ad, from real HTCondor as from localpool."""
    import json
    import time

    from condorspawner.watcher import ATTRIBUTES

    job = pool.submit("executable = /bin/sleep\narguments = 300\nqueue\n")
    try:
        out = pool.run("condor_q", "-json", "-attributes", ",".join(ATTRIBUTES), job)
        assert out.returncode == 0, out.stderr
        (ad,) = json.loads(out.stdout)
        assert isinstance(ad["ServerTime"], int) and abs(ad["ServerTime"] - time.time()) < 60
    finally:
        pool.run("condor_rm", job)
