"""The shared queue watcher: one condor_q per interval for any number of jobs."""

import asyncio
import time

import pytest

from condorspawner.condor import ScheddUnavailable
from condorspawner.watcher import QueueWatcher
from tests.waiting import wait_until_async


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
    await wait_until_async(lambda: condor.q_calls, 5, "the first query")
    start, began = condor.q_calls, time.monotonic()
    for _ in range(20):  # 100 spawners polling every 50 ms must not add queries
        for c in range(1, 101):
            watcher.watch(f"{c}.0")
        await asyncio.sleep(0.05)
    intervals = (time.monotonic() - began) / 0.2  # as many as the clock allowed, no more
    assert condor.q_calls - start <= intervals + 1
    assert all(watcher.jobs[f"{c}.0"].status == 2 for c in range(1, 101))
    await watcher.stop()


async def test_faster_while_a_spawn_waits():
    condor = CountingCondor(ads(1))
    watcher = QueueWatcher(condor, "hub", interval=10.0, fast_interval=0.05, jitter=0.0)
    watcher.watch("1.0", pending=True)
    # five queries long before the 10 s interval: the fast one while the spawn waits
    await wait_until_async(lambda: condor.q_calls >= 5, 5, "five fast queries")
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
    await wait_until_async(lambda: one.status == 2, 5, "job 1 seen running")
    condor.failing = True
    await wait_until_async(lambda: watcher.last_error, 5, "the failure noticed")
    assert one.status == 2 and not one.gone  # unknown, not gone
    condor.failing = False
    condor.ads = ads(1)  # job 2 left the queue ...
    # ... but the history does not know it yet: in neither queue nor history, marked
    await wait_until_async(lambda: two.missing_since is not None, 5, "job 2 marked missing")
    assert not two.gone  # not gone on a miss
    condor.history_ads = [{"ClusterId": 2, "ProcId": 0, "JobStatus": 4, "ExitCode": 0}]
    # the history is asked again after a growing pause
    await wait_until_async(lambda: two.gone, 10, "job 2 found in the history")
    assert two.missing_since is None
    assert two.gone and two.status == 4 and one.status == 2
    await watcher.stop()


async def test_a_job_in_neither_queue_nor_history_is_not_looked_up_every_interval():
    condor = CountingCondor([])
    watcher = QueueWatcher(condor, "hub", interval=0.02, jitter=0.0)
    ghost = watcher.watch("9.0")
    await wait_until_async(lambda: condor.q_calls >= 200, 60, "200 intervals")
    assert ghost.missing_since is not None and not ghost.gone
    # a doubling pause: about log2 of the time in intervals (8 at 200), not one a look
    # (200) nor a pause that grows by one interval a time (about 20)
    assert condor.history_calls <= 12, (condor.q_calls, condor.history_calls)
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
