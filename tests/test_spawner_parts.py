"""The spawner's parts on their own: accounts, paths, the job's site copy, the event log,
ending a job safely, a site file checked at once, poll that never raises."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import tomllib
from pathlib import Path

import pytest

from condorspawner.accounts import AccountRefused, check_account
from condorspawner.condor import JobNotFound, ScheddUnavailable
from condorspawner.finish import JobNotFinished, finish_job
from condorspawner.jobfiles import JobPathError, JobPaths, job_site_text
from condorspawner.joblog import ended_in_log
from condorspawner.site import SiteError, load_site
from tests.harness import REFERENCE
from tests.waiting import wait_until_async

# --- accounts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("root", "may not run notebook servers"),
        ("daemon", "may not run notebook servers"),
        ("nosuchuser-xyz", "there is no account"),
        ("a\x00b", "there is no account"),  # a NUL: pwd raises ValueError, not KeyError
        ("games", "system account"),
    ],
)
def test_root_system_and_unknown_accounts_are_refused(name, why):
    with pytest.raises(AccountRefused, match=why):
        check_account(name, min_uid=1000, denied=("root", "daemon"))


def test_root_is_refused_whatever_the_minimum_uid():
    with pytest.raises(AccountRefused):
        check_account("root", min_uid=0, denied=())


# --- paths ------------------------------------------------------------------------------


def paths(server: str, home: str | None = "/home/ann") -> JobPaths:
    return JobPaths.for_server(
        submit_root="{home}/.condorspawner",
        work_directory="~/jupyter",
        user="ann",
        home=home,
        server=server,
    )


def test_each_server_has_its_own_directories():
    default, named, called_default = paths(""), paths("fit"), paths("default")
    assert default.submit_dir == Path("/home/ann/.condorspawner/default")
    assert named.submit_dir == Path("/home/ann/.condorspawner/named/fit")
    assert called_default.submit_dir != default.submit_dir
    assert default.work_dir == Path("/home/ann/jupyter")
    assert named.work_dir == Path("/home/ann/jupyter-fit")
    assert len({p.work_dir for p in (default, named, called_default)}) == 3


@pytest.mark.parametrize("server", ["../x", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_server_names_that_are_not_plain_are_refused(server):
    with pytest.raises(JobPathError):
        paths(server)


def test_a_home_is_needed_for_home_paths():
    with pytest.raises(JobPathError, match="no home"):
        paths("", home=None)


# --- the job's copy of the site file ----------------------------------------------


def test_the_job_gets_no_hub_only_settings(tmp_path):
    source = Path(__file__).resolve().parents[1] / "hub_config" / "site.example.toml"
    site_file = tmp_path / "site.toml"
    site_file.write_text(
        source.read_text().replace('bin_dir = ""', 'bin_dir = "/opt/condor/bin"', 1)
    )
    text = job_site_text(load_site(site_file))
    data = tomllib.loads(text)
    assert "notebook" not in data
    assert "run_as" not in data["pool"] and "bin_dir" not in data["pool"]
    assert data["limits"] == tomllib.loads(site_file.read_text())["limits"]
    load_site_from_text = tmp_path / "job-site.toml"
    load_site_from_text.write_text(text)
    assert load_site(load_site_from_text).catalogue  # still a valid site file


# --- the event log --------------------------------------------------------------------


def test_the_event_log_tells_a_terminated_or_aborted_job():
    logs = REFERENCE / "eventlogs"
    assert ended_in_log((logs / "eventlog_exit3.log").read_text(), "23.0") == "terminated"
    sleep = (logs / "eventlog_sleep.log").read_text()
    assert ended_in_log(sleep, "14") == "aborted"
    assert ended_in_log(sleep, "14.1") is None
    assert ended_in_log(sleep, "99.0") is None
    assert ended_in_log("001 (007.000.000) 2026-01-01 00:00:00 Job executing\n...\n", "7.0") is None


# --- ending a job safely ----------------------------------------------------------------


class FakeState:
    def __init__(self, ad):
        self.ad = ad
        self.gone = False
        self.in_doubt = False


class FakeWatcher:
    """Answers like the shared watcher: the job's ad, or a failing look."""

    def __init__(self, ad):
        self.state = FakeState(ad)
        self.last_error = None
        self.failing = False

    def watch(self, job_id):
        return self.state

    async def ensure_fresh(self, max_age):
        self.last_error = "condor_q failed" if self.failing else None


class FakeCondor:
    """condor_hold and condor_rm that act on the watcher's ad (or fail)."""

    def __init__(self, watcher, transfer_seconds=0.0, rm_fails=False):
        self.watcher, self.transfer_seconds, self.rm_fails = watcher, transfer_seconds, rm_fails
        self.calls = []

    async def hold(self, job_ids, reason=None, user=None):
        self.calls.append("hold")
        ad = self.watcher.state.ad
        ad.update(JobStatus=5)
        loop = asyncio.get_running_loop()
        loop.call_later(self.transfer_seconds, ad.pop, "RemoteHost", None)

    async def rm(self, job_ids, reason=None, user=None):
        self.calls.append("rm")
        if self.rm_fails:
            raise ScheddUnavailable(["condor_rm"], 1, "Failed to connect")
        self.watcher.state.ad.update(JobStatus=3)
        self.watcher.state.gone = True


def running():
    return {"JobStatus": 2, "RemoteHost": "slot1_1@vm"}


async def test_a_running_job_is_held_and_removed_once_its_files_are_back():
    watcher = FakeWatcher(running())
    condor = FakeCondor(watcher, transfer_seconds=0.3)
    await finish_job(condor, watcher, "1.0", user="ann", reason="stop", timeout=5, poll=0.05)
    assert condor.calls == ["hold", "rm"]


async def test_a_suspended_job_is_held_and_removed_once_its_files_are_back():
    """JobStatus 7 (suspended) has its files on the execute point too (issue 23.6)."""
    watcher = FakeWatcher({"JobStatus": 7, "RemoteHost": "slot1_1@vm"})
    condor = FakeCondor(watcher, transfer_seconds=0.1)
    await finish_job(condor, watcher, "1.0", user="ann", reason="stop", timeout=3, poll=0.05)
    assert condor.calls == ["hold", "rm"]


async def test_a_slow_transfer_is_never_cut_short_by_a_removal():
    watcher = FakeWatcher(running())
    condor = FakeCondor(watcher, transfer_seconds=10)
    with pytest.raises(JobNotFinished, match="stays held and was not removed"):
        await finish_job(condor, watcher, "1.0", user="ann", reason="stop", timeout=0.5, poll=0.05)
    assert condor.calls == ["hold"]


async def test_a_failing_removal_keeps_the_job_and_says_so():
    watcher = FakeWatcher(running())
    condor = FakeCondor(watcher, rm_fails=True)
    with pytest.raises(JobNotFinished, match="it is kept"):
        await finish_job(condor, watcher, "1.0", user="ann", reason="stop", timeout=2, poll=0.05)


async def test_an_unknown_state_removes_nothing():
    watcher = FakeWatcher(running())
    watcher.failing = True
    condor = FakeCondor(watcher)
    with pytest.raises(JobNotFinished, match="unknown"):
        await finish_job(condor, watcher, "1.0", user="ann", reason="stop", timeout=0.3, poll=0.05)
    assert condor.calls == []


async def test_a_held_or_idle_job_is_removed_at_once():
    for ad in ({"JobStatus": 5}, {"JobStatus": 1}):
        watcher = FakeWatcher(ad)
        condor = FakeCondor(watcher)
        await finish_job(condor, watcher, "1.0", user="ann", reason="x", timeout=2, poll=0.05)
        assert condor.calls == ["rm"]


async def test_a_job_already_gone_is_fine():
    """condor_rm finds no such job (it left the queue meanwhile): finished, without an
    error, and a job held already is not held again."""
    watcher = FakeWatcher({"JobStatus": 5})

    class Gone(FakeCondor):
        async def rm(self, job_ids, reason=None, user=None):
            self.calls.append("rm")
            raise JobNotFound(["condor_rm"], 1, "Job 1.0 not found", ["1.0"])

    condor = Gone(watcher)
    await finish_job(condor, watcher, "1.0", user="ann", reason="x", timeout=0.3, poll=0.05)
    assert condor.calls == ["rm"]


# --- the site at once, poll that never raises -------------------------------------------


def test_a_wrong_site_file_fails_when_the_spawner_is_made(tmp_path):
    from condorspawner.spawner import CondorSpawner

    bad = tmp_path / "site.toml"
    bad.write_text("[pool]\nrun_ass = []\n")
    with pytest.raises(SiteError, match="run_ass"):
        CondorSpawner(site_file=str(bad))


def test_start_uses_the_traits_as_they_are_at_the_start():
    """JupyterHub's group overrides and pre_spawn_hook set traits after the job was first
    used (the form, a poll): the start must run with the new values."""
    from types import SimpleNamespace

    from condorspawner.spawner import CondorSpawner

    spawner = CondorSpawner()
    spawner.user = SimpleNamespace(name="ann")
    assert spawner.job.stop_timeout == spawner.stop_timeout  # first use: the form, a poll
    spawner.stop_timeout, spawner.queue_poll_interval = 7.0, 3.0  # pre_spawn_hook
    spawner.hub = SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api")
    job = spawner._configured_job()
    assert (job.stop_timeout, job.intervals[0]) == (7.0, 3.0)
    assert job.tunnel.hub_api == ("127.0.0.1", 8081) and spawner.spawn_progress.interval == 3.0


async def test_poll_never_raises():
    from condorspawner.spawner import CondorSpawner

    spawner = CondorSpawner()
    spawner.record.job_id = "1.0"

    def broken():
        raise RuntimeError("the watcher broke")

    spawner.job.watcher = broken
    assert await spawner.poll() is None


def silent_schedd_spawner(monkeypatch, port: int):
    from condorspawner.protocol import Rendezvous

    """A spawner after a hub restart (no tunnel yet) whose job's schedd does not answer:
    its watcher knows no ad until the test gives one (``spawner.state.ad``)."""
    from types import SimpleNamespace

    from condorspawner.spawner import CondorSpawner

    state = SimpleNamespace(ad=None, missing_since=None, gone=False)

    async def fresh(max_age: float) -> None:
        pass

    watcher = SimpleNamespace(watch=lambda job_id: state, ensure_fresh=fresh)
    monkeypatch.setattr(CondorSpawner, "server", property(lambda self: object()))
    spawner = CondorSpawner()
    record = spawner.record
    record.job_id, record.local_port, record.schedd = "7.0", port, "ap2.example.org"
    record.nonce = Rendezvous.new().nonce
    spawner.hub = SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api")
    spawner.job.watcher = lambda: watcher
    spawner.state = state
    return spawner


async def fetch_local(port: int) -> tuple[int, str]:
    """(status, body) of a GET to 127.0.0.1:port, off the event loop."""
    import urllib.error
    import urllib.request

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/user/u/api", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    return await asyncio.to_thread(get)


def free_local_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_server_whose_schedd_is_silent_is_answered_for_until_it_speaks(monkeypatch):
    """After a hub restart (no tunnel yet) an unknown job's port gives the 424 page; once
    the schedd answers and the job is not running, that page (no longer true) goes."""
    import socket
    import urllib.error

    from condorspawner.jobad import IDLE

    port = free_local_port()
    spawner = silent_schedd_spawner(monkeypatch, port)
    assert await spawner.poll() is None
    status, page = await fetch_local(port)
    assert status == 424 and "job 7.0" in page and "ap2.example.org" in page
    spawner.state.ad = {"JobStatus": IDLE, "EnteredCurrentStatus": time.time()}
    assert await spawner.poll() is None
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await fetch_local(port)
    with socket.socket() as other, pytest.raises(OSError):  # the port stays the session's
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))
    await spawner._close_tunnel()


async def test_poll_attaches_only_to_a_run_the_schedd_dated(monkeypatch):
    """After a hub restart the job runs again, its ad still dated by the run before (the
    schedd dates a run when it spawns the shadow): no tunnel to that run's directory."""
    from condorspawner.attach import Attachment

    opened: list[int | None] = []

    async def record(self, run, on_listening=None) -> int:
        opened.append(run)
        return self.local_port

    monkeypatch.setattr(Attachment, "open", record)
    spawner = silent_schedd_spawner(monkeypatch, free_local_port())
    t = int(time.time())
    spawner.state.ad = {
        "JobStatus": 2,
        "JobCurrentStartDate": t - 100,
        "EnteredCurrentStatus": t,
        "ServerTime": t,
    }
    assert await spawner.poll() is None and opened == []
    spawner.state.ad["JobCurrentStartDate"] = t
    assert await spawner.poll() is None and opened == [t]
    await spawner._close_tunnel()


async def test_an_evicted_jobs_wait_is_measured_on_the_schedds_clock(monkeypatch):
    """Issue 23.7: the hub's clock is a day ahead of the schedd's; the job was evicted 10 s
    ago by the schedd's clock (``ServerTime`` from the same query): it is kept waiting,
    not ended for a day-long wait; one that really waited too long is ended."""
    from condorspawner.jobad import IDLE

    spawner = silent_schedd_spawner(monkeypatch, free_local_port())
    ended: list[str] = []

    async def end(why: str) -> int:
        ended.append(why)
        return 1

    spawner._end = end
    schedd_now = int(time.time()) - 86400
    spawner.state.ad = {"JobStatus": IDLE, "EnteredCurrentStatus": schedd_now - 10}
    spawner.state.ad["ServerTime"] = int(schedd_now)
    assert await spawner.poll() is None and ended == []
    late = spawner.site.notebook.start_timeout + 60
    spawner.state.ad["EnteredCurrentStatus"] = schedd_now - late
    spawner.state.ad["ServerTime"] = int(schedd_now)
    assert await spawner.poll() == 1 and ended and f"waited {late} s" in ended[0]


async def test_a_held_job_this_hub_ended_is_not_a_silent_schedd(monkeypatch, caplog):
    """Issue 23.8: once poll has ended a held job, the next poll (the watcher no longer
    follows it) must not call its schedd silent and start the stand-in's page."""
    from condorspawner.jobad import HELD

    spawner = silent_schedd_spawner(monkeypatch, free_local_port())
    finished: list[str] = []

    async def finish(reason: str) -> None:
        finished.append(reason)

    spawner.job.finish = finish
    spawner.state.ad = {"JobStatus": HELD, "HoldReason": "disk quota"}
    assert await spawner.poll() == 1 and len(finished) == 1
    assert "disk quota" in spawner.last_end
    spawner.state.ad = None  # forgotten by the watcher
    await spawner.poll()
    assert spawner.tunnel.standby.page is None
    assert "does not answer" not in caplog.text
    assert "disk quota" in spawner.last_end  # the reason is kept for the next start
    await spawner._close_tunnel()


async def test_a_running_job_no_tunnel_reaches_is_kept_until_the_reattach_timeout(
    monkeypatch,
):
    """Issue 23.4: every attach fails: the job is not ended at the first failure; its port
    gives the reconnecting page until ``notebook.reattach_timeout``, then it is ended."""
    from condorspawner.attach import AttachError, Attachment
    from condorspawner.jobad import RUNNING

    async def refused(self, run, on_listening=None):
        raise AttachError("Could not reach the notebook in job 7.0: refused")

    monkeypatch.setattr(Attachment, "open", refused)
    port = free_local_port()
    spawner = silent_schedd_spawner(monkeypatch, port)
    ended: list[str] = []

    async def end(why: str) -> int:
        ended.append(why)
        return 1

    spawner._end = end
    spawner.state.ad = {"JobStatus": RUNNING, "JobCurrentStartDate": 1700000000}
    assert await spawner.poll() is None and ended == []
    status, page = await fetch_local(port)
    assert status == 424 and "re-established" in page
    spawner.tunnel.standby.lost_at -= spawner.site.notebook.reattach_timeout
    assert await spawner.poll() == 1
    assert "refused" in ended[0] and "no tunnel for" in ended[0]
    await spawner._close_tunnel()


async def test_the_stand_in_never_leaves_the_route_to_whoever_took_the_port(monkeypatch):
    """A local user who bound the server's port while the hub was down gets none of its
    traffic: the stand-in takes another port, and the server's URL follows it."""
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        spawner = silent_schedd_spawner(monkeypatch, taken)
        assert await spawner.poll() is None
        assert spawner.record.local_port not in (taken, 0)
        status, page = await fetch_local(spawner.record.local_port)
        assert status == 424 and "job 7.0" in page
        await spawner._close_tunnel()


# --- the rendezvous ---------------------------------------------------------------------


def test_each_run_has_its_own_directory_and_the_tag_reveals_none():
    from condorspawner.protocol import Rendezvous

    meeting = Rendezvous.new()
    first, second = meeting.for_run(1700000000), meeting.for_run(1700000500)
    assert first.directory != second.directory != meeting.directory
    assert meeting.nonce not in first.directory  # a seen name says nothing of the next run's
    assert first.for_run(1700000000).directory == first.directory  # both sides derive it alike
    for text in (first.directory, second.directory, meeting.nonce):
        assert text.rsplit("-", 1)[-1] not in first.tag


def test_a_run_counts_as_dated_only_once_the_schedd_dated_it():
    from condorspawner.jobad import RUN_DATED_WITHIN, run_dated

    t = 1796236912  # recorded on the real pool: running again, the previous run's date
    stale = {"JobStatus": 2, "JobCurrentStartDate": t - 14, "EnteredCurrentStatus": t}
    assert not run_dated({**stale, "ServerTime": t + 1})
    first = {"JobStatus": 2, "EnteredCurrentStatus": t, "ServerTime": t + 1}  # none yet
    assert not run_dated(first)
    assert run_dated({**stale, "JobCurrentStartDate": t, "ServerTime": t + 1})
    # condor_suspend then condor_continue on the real pool (25.0.13): JobStatus 2 again,
    # LastJobStatus 7, EnteredCurrentStatus still the run's start: dated
    resumed = {"JobStatus": 2, "LastJobStatus": 7, "EnteredCurrentStatus": t}
    assert run_dated({**resumed, "JobCurrentStartDate": t, "ServerTime": t + 5})
    # never dated: after a while the date is trusted, not waited for without end
    assert run_dated({**stale, "ServerTime": t + RUN_DATED_WITHIN + 1})
    assert run_dated({"JobStatus": 2})  # an HTCondor that says neither: nothing to wait for


# --- progress -------------------------------------------------------------------------


def progress_of_a_job(interval: float):
    """A spawn's progress, fed by a notebook job (of job 7.0) with this poll interval."""
    import logging

    from condorspawner.attach import TunnelSettings
    from condorspawner.notebook_job import JobRecord, NotebookJob
    from condorspawner.progress import SpawnProgress
    from condorspawner.site import parse_site
    from condorspawner.userfiles import UserFiles

    progress = SpawnProgress(logging.getLogger("test"), "u", interval)
    job = NotebookJob(
        parse_site({}),
        JobRecord(job_id="7.0"),
        hub_id="h",
        user="u",
        server="",
        run_as=None,
        files=UserFiles([]),
        tunnel=TunnelSettings(),
        stop_timeout=1,
        intervals=(interval, interval),
        on_event=progress.event,
    )
    return progress, job


def test_a_starting_server_is_never_silent_longer_than_a_poll_interval():
    progress, job = progress_of_a_job(interval=1.0)

    async def starting_for(seconds: float) -> None:
        task = asyncio.ensure_future(job._server_starting())
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(starting_for(3.5))
    messages = [e["message"] for e in progress.events]
    assert "a first start in a fresh environment can take a minute" in messages[0], messages
    import re

    said = [
        re.fullmatch(r"The notebook server in job 7.0 is still starting \((\d+) s\)", m)
        for m in messages[1:]
    ]
    assert len(said) >= 2 and all(said), messages  # one word per interval, none missing
    seconds = [int(m.group(1)) for m in said]
    assert seconds == sorted(seconds) and seconds[0] >= 1, messages
    bar = [e["progress"] for e in progress.events]
    assert bar == sorted(bar) and bar[-1] < 90, bar


def test_a_phase_is_repeated_only_after_a_quiet_poll_interval():
    progress, _ = progress_of_a_job(interval=60.0)
    progress.event("queued", 20)
    progress.event("still queued", 20, again=True)
    assert [e["message"] for e in progress.events] == ["queued"]
    progress.last_event -= 61
    progress.event("still queued", 20, again=True)
    assert [e["message"] for e in progress.events] == ["queued", "still queued"]


# --- review: the stand-in's hand-back, a given-up child -----------------------------------


async def test_the_stand_in_keeps_no_connection_once_it_stands_down():
    """A local user holding a connection to the stand-in open (no request head) must not
    keep the page going: once it stands down, that connection is gone, and the session's
    held port (never given up) leads to the tunnel."""
    from condorspawner.standby import Standby
    from proxy_tunnel import SocketRelay

    relay, standby = SocketRelay(lambda: []), Standby("7.0", None)
    relay.fallback = standby.answer
    port = await relay.listen()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await asyncio.sleep(0.2)  # accepted: the stand-in waits for a request head
        started = time.monotonic()
        relay.fallback = None
        await standby.close()
        try:
            got = await asyncio.wait_for(reader.read(), 3.0)
        except ConnectionResetError:
            got = b""
        assert got == b"" and time.monotonic() - started < 3  # dropped, no late page
    finally:
        writer.close()
        await relay.close()


async def test_a_child_outside_a_group_of_its_own_is_still_killed_when_given_up_on():
    """``communicate_within``'s default kill is the child's group; a child started without
    ``start_new_session`` has none, and must not be waited for to the end of its work."""
    import signal

    from condorspawner.processes import communicate_within

    proc = await asyncio.create_subprocess_exec(
        "sleep", "8", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await communicate_within(proc, None, 0.3)
    assert time.monotonic() - started < 4 and proc.returncode == -signal.SIGKILL


async def test_a_kept_job_outlives_a_hub_restart_and_no_second_job_starts(monkeypatch):
    """Issue 23.3: a stop that could not end the job keeps it; User.spawn clears the state
    before start. The kept job must be in the saved state, and a start whose saved schedd
    does not answer refuses, naming the job, instead of submitting a second one."""
    from types import SimpleNamespace

    from condorspawner.condor import Condor
    from condorspawner.leftovers import settle_leftovers
    from condorspawner.spawner import CondorSpawner, SpawnError

    old = CondorSpawner()
    old.record.job_id, old.record.schedd, old.record.keep_job = "4.0", "ap2.example.org", True
    saved = old.get_state()
    spawner = CondorSpawner()  # the next hub, from the database
    spawner.user = SimpleNamespace(name="ann")
    spawner.load_state(saved)
    spawner.clear_state()  # User.spawn, before start()
    record = spawner.record
    assert (record.job_id, record.schedd, record.keep_job) == ("4.0", "ap2.example.org", True)

    async def silent(self, *args, **kwargs):
        raise ScheddUnavailable(["condor_q"], 1, "Failed to connect to ap2.example.org")

    monkeypatch.setattr(Condor, "q", silent)
    with pytest.raises(SpawnError, match=r"Job 4\.0 .*ap2\.example\.org"):
        await settle_leftovers(spawner.job)


async def test_a_spawn_saved_before_its_submit_answer_finds_its_job(monkeypatch):
    """Issue 23.5: the hub was killed during condor_submit: the state has the spawn's
    id, no job id. poll finds the job by the spawn's mark and follows it; with no such
    job the server is gone; with the schedd silent it is kept (unknown is not gone)."""
    from types import SimpleNamespace

    from condorspawner.condor import Condor
    from condorspawner.spawner import CondorSpawner

    queue: list[dict] = [{"ClusterId": 9, "ProcId": 0, "JobStatus": 1}]
    asked: list[str] = []

    async def q(self, *args, constraint=None, **kwargs):
        asked.append(constraint or "")
        if queue is None:
            raise ScheddUnavailable(["condor_q"], 1, "Failed to connect")
        return [ad for ad in queue if "spawn-1" in (constraint or "")]

    monkeypatch.setattr(Condor, "q", q)
    spawner = CondorSpawner()
    spawner.user = SimpleNamespace(name="ann")
    spawner.load_state({"spawn_id": "spawn-1", "nonce": "n" * 32})
    spawner._persist_state = lambda: None
    state = SimpleNamespace(
        ad={"JobStatus": 1, "EnteredCurrentStatus": time.time()}, missing_since=None, gone=False
    )

    async def fresh(max_age):
        pass

    spawner.job.watcher = lambda: SimpleNamespace(watch=lambda job_id: state, ensure_fresh=fresh)
    assert await spawner.poll() is None  # queued: followed
    assert spawner.record.job_id == "9.0" and any("spawn-1" in c for c in asked)
    for answer, expected in ((None, None), ([], 0)):
        queue = answer
        again = CondorSpawner()
        again.user = SimpleNamespace(name="ann")
        again.load_state({"spawn_id": "spawn-1"})
        assert await again.poll() == expected


async def test_sessions_reattach_a_few_at_a_time_per_schedd_and_answer_meanwhile(monkeypatch):
    """Issue 27: after a hub restart every session's poll wants its tunnel at once. At most
    ``notebook.reattach_concurrency`` attach per schedd; every other poll returns at once,
    its port giving the "re-established" page (JupyterHub's start-up check passes) until
    a slot frees and its tunnel is made; a failed attach counts toward the page's clock."""
    from types import SimpleNamespace

    from condorspawner.attach import AttachError, Attachment
    from condorspawner.jobad import RUNNING

    release, opening, most = asyncio.Event(), set(), [0]

    async def slow_open(self, run, on_listening=None) -> int:
        opening.add(self.job_id)
        most[0] = max(most[0], len(opening))
        await release.wait()
        opening.discard(self.job_id)
        if self.job_id == "7.4":
            raise AttachError("Could not reach the notebook in job 7.4: refused")
        self.tunnel, self.run = SimpleNamespace(failed=False, failure=None, close=nothing), run
        return self.local_port

    async def nothing() -> None:
        pass

    monkeypatch.setattr(Attachment, "open", slow_open)
    spawners, started = [], int(time.time()) - 60
    for i in range(5):
        spawner = silent_schedd_spawner(monkeypatch, free_local_port())
        spawner.record.job_id = f"7.{i}"
        spawner.site = dataclasses.replace(
            spawner.site,
            notebook=dataclasses.replace(spawner.site.notebook, reattach_concurrency=2),
        )
        spawner.state.ad = {"JobStatus": RUNNING, "JobCurrentStartDate": started}
        spawners.append(spawner)
    polls = [asyncio.create_task(s.poll()) for s in spawners]
    done, _ = await asyncio.wait(polls, timeout=5)
    assert len(done) == 3 and all(p.result() is None for p in done)  # 2 wait in their slots
    assert most[0] == 2 and len(opening) == 2
    for spawner in spawners[2:]:
        status, page = await fetch_local(spawner.record.local_port)
        assert status == 424 and "re-established" in page
    release.set()
    assert await asyncio.gather(*polls) == [None] * 5
    await wait_until_async(
        lambda: all(s.job.reaches(s.state.ad) for s in spawners[:4]), 5, "four attached", 0.05
    )
    await wait_until_async(lambda: not spawners[4].tunnel.reattach.pending, 5, "the fifth", 0.05)
    assert most[0] == 2
    assert [await s.poll() for s in spawners] == [None] * 5
    assert spawners[4].tunnel.standby.lost_at is not None  # the failure started the page's clock
    status, page = await fetch_local(spawners[4].record.local_port)
    assert status == 424 and "re-established" in page
    for spawner in spawners:
        await spawner._close_tunnel()
