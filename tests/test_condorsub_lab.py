"""condorsub lab against localpool: JupyterLab through the tunnel, and Ctrl-C brings it all home;
the job-following loop it shares with the spawner (``watcher.follow_job``) on its own."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from condorspawner.protocol import SECRET_FILE, JobSecret
from condorspawner.watcher import JobEnded, JobHeld, JobState, StillQueued, follow_job
from proxy_tunnel.procs import alive, descendants
from tests.commands import Lab, call, site_env
from tests.harness import CONDORSUB
from tests.waiting import wait_until

# --- follow_job: the loop the lab and the spawner share -----------------------------------


def change(state: JobState, **ad) -> None:
    """What the watcher does when a look finds the job changed."""
    state.ad = {"ClusterId": 7, "ProcId": 0, **ad}
    state.changed.set()
    state.changed = asyncio.Event()


async def test_follow_job_tells_the_queue_reason_once_per_change_and_returns_when_done():
    state = JobState("7.0")
    seen = []

    async def scenario():
        await asyncio.sleep(0.05)
        for reason in ("no match found", "no match found", "rank"):
            change(state, JobStatus=1, LastRejMatchReason=reason)
            await asyncio.sleep(0.05)
        change(state, JobStatus=2, RemoteHost="slot1@ep")
        await asyncio.sleep(0.05)
        change(state, JobStatus=2, RemoteHost="slot1@ep", Note="again")

    driver = asyncio.create_task(scenario())
    ad = await asyncio.wait_for(
        follow_job(
            state,
            lambda ad: ad.get("Note") == "again",
            start_timeout=60,
            on_idle=lambda reason, new: seen.append((reason, new)),
            on_running=lambda ad: seen.append(("running", ad["RemoteHost"])),
        ),
        5,
    )
    await driver
    assert ad["Note"] == "again"
    assert [s for s in seen if s[1] is True] == [("no match found", True), ("rank", True)]
    assert ("no match found", False) in seen  # the same reason again: not new
    assert seen.count(("running", "slot1@ep")) == 1  # once, however often it is seen running


@pytest.mark.parametrize(
    ("ad", "gone", "error"),
    [
        ({"JobStatus": 5, "HoldReason": "quota"}, False, JobHeld),
        ({"JobStatus": 4, "ExitCode": 1}, False, JobEnded),
        ({"JobStatus": 3}, False, JobEnded),
        ({"JobStatus": 2}, True, JobEnded),  # left the queue: the history's ad
    ],
)
async def test_follow_job_raises_what_became_of_the_job(ad, gone, error):
    state = JobState("7.0")
    change(state, **ad)
    state.gone = gone
    with pytest.raises(error) as raised:
        await asyncio.wait_for(follow_job(state, lambda ad: False, start_timeout=60), 5)
    assert raised.value.ad["JobStatus"] == ad["JobStatus"]
    if error is JobHeld:
        assert raised.value.reason == "quota"


async def test_follow_job_gives_up_on_a_job_queued_past_the_start_timeout():
    state = JobState("7.0")
    change(state, JobStatus=1)
    with pytest.raises(StillQueued) as raised:
        await asyncio.wait_for(follow_job(state, lambda ad: False, start_timeout=0.3), 5)
    assert raised.value.reason == "waiting to be matched" and raised.value.timeout == 0.3


async def test_follow_job_returns_none_on_stop_or_when_the_task_ends():
    state = JobState("7.0")
    change(state, JobStatus=2)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    assert (
        await asyncio.wait_for(follow_job(state, lambda ad: False, start_timeout=60, stop=stop), 5)
        is None
    )
    task = asyncio.create_task(asyncio.sleep(0.1))
    assert (
        await asyncio.wait_for(follow_job(state, lambda ad: False, start_timeout=60, task=task), 5)
        is None
    )
    assert task.done()
    # no ad yet (the first look has not answered): followed, nothing raised or returned
    blank = JobState("8.0")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(follow_job(blank, lambda ad: True, start_timeout=0.01), 0.3)


# --- condorsub lab ----------------------------------------------------------------------


def test_a_bad_option_gives_one_line_and_submits_nothing(tmp_path):
    env = site_env(tmp_path, dict(os.environ))
    for args, word in (
        (["--memory", "1PB"], "--memory"),
        (["--os", "Windows95"], "--os"),
        (["--dir", "my lab"], "--dir"),
    ):
        result = subprocess.run(
            [CONDORSUB, "lab", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"condorsub: {word}"), result.stderr
        assert result.stdout == ""
    assert not (tmp_path / "condorsub-jobs").exists()
    assert not (tmp_path / "my lab").exists()


def test_lab_answers_through_the_tunnel_and_ctrl_c_brings_the_work_home(pool, tmp_path):
    (pool.submit_dir / "analysis").mkdir()
    (pool.submit_dir / "analysis" / "notes.txt").write_text("from the desktop\n")
    browser, opened = tmp_path / "browser", tmp_path / "browser.args"
    browser.write_text(f'#!/bin/sh\necho "$@" > {opened}\n')
    browser.chmod(0o755)
    args = ("--os", "Debian12", "--cpus", "1", "--dir", "analysis", "--open")
    lab = Lab(pool, tmp_path, *args, env={"BROWSER": str(browser)})
    try:
        base, token, job = lab.base, lab.token, lab.job
        ad = pool.ad(job)
        assert (ad["CondorSpawnerKind"], ad["ContainerOS"], ad["RequestCpus"]) == (
            "notebook",
            "Debian12",
            1,
        )
        assert ad["MaxRuntime"] == 2 * 3600  # the site's default runtime limit
        meeting = JobSecret.loads((lab.submit_dir / SECRET_FILE).read_text()).rendezvous
        server_dir = Path(meeting.for_run(ad["JobCurrentStartDate"]).directory)
        assert server_dir.is_dir()  # the launcher's private directory of this run

        # JupyterLab's API through the tunnel: with the token, and only with it
        status, answer = call(f"{base}/api/status", token=token)
        assert status == 200 and "started" in answer, answer
        assert call(f"{base}/api/status")[0] == 403
        assert call(f"{base}/api/status", token="not-the-token")[0] == 403
        status, listing = call(f"{base}/api/contents", token=token)
        assert status == 200 and "notes.txt" in [c["name"] for c in listing["content"]]
        lab.write("results.txt", "made in the job\n")

        # --open: the browser gets a private page that leads to the URL, not the token itself
        wait_until(opened.exists, 10, "the browser was started")
        page = Path(opened.read_text().strip().removeprefix("file://"))
        assert token not in opened.read_text() and token in page.read_text()
        assert oct(page.stat().st_mode & 0o777) == "0o600"
        # the token is nowhere public: not in the job ad, not on a command line here
        assert token not in pool.run("condor_q", "-l", job).stdout
        tree = [lab.proc.pid, *descendants(lab.proc.pid)]
        assert len(tree) > 1  # its tunnel's keeper, condor_ssh_to_job, ssh
        for pid in tree:
            assert token not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")

        os.killpg(lab.proc.pid, signal.SIGINT)
    finally:
        code = lab.wait()
    assert code == 0, lab.stderr
    assert token not in lab.stderr
    # no job, no tunnel process of this test, the server's directory gone
    assert pool.run("condor_q", "-json", job).stdout.strip() == ""
    wait_until(lambda: not [p for p in tree if alive(p)], 10, "the lab's processes ended")
    assert not server_dir.exists()
    # the file written in the job is back, beside what went in; the private file is gone
    assert (pool.submit_dir / "analysis" / "results.txt").read_text() == "made in the job\n"
    assert (pool.submit_dir / "analysis" / "notes.txt").read_text() == "from the desktop\n"
    assert not (lab.submit_dir / SECRET_FILE).exists() and not page.exists()
    for log in ("notebook.out", "notebook.err", "notebook.log"):
        if (lab.submit_dir / log).exists():
            assert token not in (lab.submit_dir / log).read_text(errors="replace")
    assert "back in" in lab.stderr, lab.stderr


def test_a_held_lab_job_ends_the_session_with_its_reason_and_the_work_home(pool, tmp_path):
    lab = Lab(pool, tmp_path)  # the default work directory: ./jupyter-lab
    try:
        lab.write("draft.txt", "before the hold\n")
        held = pool.run("condor_hold", "-reason", "disk quota exceeded", lab.job)
        assert held.returncode == 0, held.stderr
    finally:
        code = lab.wait()
    assert code == 1, lab.stderr
    assert f"held job {lab.job}: disk quota exceeded" in lab.stderr
    assert "Traceback" not in lab.stderr
    assert pool.run("condor_q", "-json", lab.job).stdout.strip() == ""
    assert (pool.submit_dir / "jupyter-lab" / "draft.txt").read_text() == "before the hold\n"


@pytest.mark.slow  # waits out the start timeout
def test_a_lab_no_slot_fits_is_removed_at_the_sites_start_timeout(pool, tmp_path):
    result = subprocess.run(
        [CONDORSUB, "lab", "--requirements", 'TARGET.Arch == "SPARC"'],
        cwd=pool.submit_dir,
        env=site_env(tmp_path, pool.env),  # start_timeout 10 s
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    job = re.search(r"job (\d+\.\d+)", result.stderr).group(1)
    assert "was still waiting in the queue after 10 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no URL
    assert pool.run("condor_q", "-json", job).stdout.strip() == ""
    submit_dir = next((pool.submit_dir / "condorsub-jobs").iterdir())
    assert not (submit_dir / SECRET_FILE).exists()


def test_a_held_job_fails_the_lab_whatever_exit_code_it_had():
    """A job that exited 0 and was then held (its output could not come back) is a failure;
    only a server that ended by itself with 0 gives 0."""
    from condorspawner.cli.exits import FAILED
    from condorspawner.cli.lab import exit_code
    from condorspawner.errors import JobFailed

    held = JobFailed("HTCondor held job 7.0: transfer failed", {"JobStatus": 5, "ExitCode": 0})
    assert exit_code(held) == FAILED
    assert exit_code(JobFailed("ended", {"JobStatus": 4, "ExitCode": 0}, ended=True)) == 0
    assert exit_code(JobFailed("ended", {"JobStatus": 4, "ExitCode": 2}, ended=True)) == FAILED
