"""What a notebook job's state means for poll(): never gone on an empty look, dead jobs ended."""

from __future__ import annotations

import pytest

from condorspawner.health import Case, exit_status, gone_why, judge
from condorspawner.jobad import COMPLETED, HELD, IDLE, REMOVED, RUNNING
from condorspawner.watcher import JobState

START_TIMEOUT = 300


def state_of(ad: dict | None, *, gone: bool = False, missing_since: float | None = None):
    state = JobState("7.0")
    state.ad, state.gone, state.missing_since = ad, gone, missing_since
    return state


def verdict(ad: dict | None, **kwargs):
    return judge(state_of(ad, **kwargs), "7.0", start_timeout=START_TIMEOUT)


def test_no_answer_is_unknown_and_a_missing_job_is_missing_whatever_its_last_ad():
    assert verdict(None).case is Case.UNKNOWN
    assert verdict({"JobStatus": RUNNING}, missing_since=1.0).case is Case.MISSING


@pytest.mark.parametrize(
    ("ad", "gone", "code"),
    [
        ({"JobStatus": COMPLETED, "ExitCode": 0}, False, 0),
        ({"JobStatus": COMPLETED, "ExitCode": 3}, False, 3),
        ({"JobStatus": REMOVED}, False, 1),  # no exit code: JupyterHub must see an end
        ({"JobStatus": RUNNING}, True, 1),  # left the queue (the history's last ad)
    ],
)
def test_a_job_that_left_is_gone_with_its_exit_status(ad, gone, code):
    result = verdict(ad, gone=gone)
    assert (result.case, result.code) == (Case.GONE, code)


def test_a_held_job_is_ended_saying_why():
    result = verdict({"JobStatus": HELD, "HoldReason": "disk quota exceeded"})
    assert result.case is Case.END and "held job 7.0: disk quota exceeded" in result.why


def test_an_evicted_job_waits_until_the_start_timeout_on_the_schedds_clock():
    schedd_now = 1_000_000  # a day behind the hub's clock: only the schedd's counts
    waiting = {"JobStatus": IDLE, "ServerTime": schedd_now, "EnteredCurrentStatus": schedd_now - 10}
    assert verdict(waiting).case is Case.WAITING
    late = {**waiting, "EnteredCurrentStatus": schedd_now - START_TIMEOUT - 5}
    result = verdict(late)
    assert result.case is Case.END and f"waited {START_TIMEOUT + 5} s" in result.why


def test_running_is_running_and_suspended_waits():
    assert verdict({"JobStatus": RUNNING}).case is Case.RUNNING
    assert verdict({"JobStatus": 7}).case is Case.WAITING  # suspended: it runs on later


def test_exit_status_is_what_jupyterhub_reads_as_ended():
    assert [exit_status(c) for c in (0, 2, None, "x")] == [0, 2, 1, 0]


def test_a_missing_job_is_settled_by_its_event_log_else_after_the_bound():
    log = "005 (007.000.000) 2026-12-03 12:00:00 Job terminated.\n"
    assert gone_why(log, "7.0", 1.0, 60) == "job 7.0 terminated (its event log says so)"
    assert gone_why(log, "8.0", 1.0, 60) is None  # another job's end: not this one's
    assert "taken as gone" in gone_why("", "7.0", 61.0, 60)
