"""Several schedds: the choice by load, the per-schedd watchers, condorsub over all of them,
and the job's token in the private file (unit tests and localpool with two schedds)."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import subprocess
import sys
from collections import Counter

import pytest

from condorspawner.condor import Condor, ScheddUnavailable
from condorspawner.protocol import JobSecret, ProtocolError, Rendezvous
from condorspawner.schedds import NoSchedd, ScheddChooser, load, submit_somewhere
from condorspawner.site import Pool, SiteError, load_site
from condorspawner.watcher import QueueWatcher
from tests.harness import CONDORSUB
from tests.waiting import wait_until_async

HOST = socket.gethostname().split(".")[0] or "localhost"
S1, S2 = f"schedd1@{HOST}", f"schedd2@{HOST}"


def FakeCondor(ads, pool=None) -> Condor:
    """A Condor whose condor_status -schedd answers ``ads`` (and counts its calls)."""
    tools = Condor(pool or Pool(schedds=("a", "b", "c")))
    tools.calls = 0

    async def schedd_ads(constraint=None):
        tools.calls += 1
        return [dict(ad) for ad in ads]

    tools.schedd_ads = schedd_ads
    return tools


def condorsub(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "condorspawner.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ad(name, running, idle):
    return {"Name": name, "TotalRunningJobs": running, "TotalIdleJobs": idle}


def test_least_loaded_wins_ties_at_random_and_the_silent_are_left_out():
    fake = FakeCondor([ad("a", 5, 5), ad("b", 2, 1), ad("c", 0, 3), ad("z", 0, 0)])
    firsts = Counter(asyncio.run(ScheddChooser(fake, ttl=60).choose()) for _ in range(40))
    assert set(firsts) == {"b", "c"} and min(firsts.values()) > 3  # a tie: either, at random
    chooser = ScheddChooser(fake, ttl=60)
    calls = fake.calls
    assert asyncio.run(chooser.choose(failing=["b"])) == "c"
    chooser.mark_down("c")
    assert asyncio.run(chooser.choose(failing=["b"])) == "a"
    assert fake.calls - calls == 1  # the status query is cached
    with pytest.raises(NoSchedd, match="no schedd answers"):
        asyncio.run(chooser.choose(failing=["a", "b"]))
    assert load(ad("x", 3, 4)) == 7


def test_a_collector_ad_whose_name_is_not_a_schedd_name_is_never_chosen():
    """Names from the collector go into the spawner's state and onto -name: checked first."""
    bad = ["-pool evil", "a\nb", "", " x", "x y", "--help"]
    fake = FakeCondor(
        [*(ad(name, 0, 0) for name in bad), ad("s@h.example.org", 9, 9)],
        Pool(schedd_constraint="true"),
    )
    chooser = ScheddChooser(fake, ttl=60)
    assert [a["Name"] for a in asyncio.run(chooser.ads())] == ["s@h.example.org"]
    assert {asyncio.run(chooser.choose()) for _ in range(10)} == {"s@h.example.org"}
    for name in bad[:2]:
        with pytest.raises(ValueError, match="not a schedd name"):
            Condor().for_schedd(name)  # e.g. a name from a tampered spawner state


def test_condorsub_names_a_bad_schedd_name_in_one_line(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[pool]\nschedds = ["a", "b"]\n')
    env = {"CONDORSPAWNER_SITE": str(site), "PATH": "/nonexistent"}
    workflow = tmp_path / "wf.toml"
    workflow.write_text('[[stage]]\nname = "one"\nexecutable = "/bin/true"\n')
    for args in (
        ["q", "--name", "a b"],
        ["rm", "--name=-x", "3.0"],
        ["dag", str(workflow), "--schedd", "a b"],
        ["lab", "--schedd=-x"],
    ):
        result = condorsub(env, *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "is not a schedd name" in result.stderr


def test_a_burst_of_submissions_is_spread_until_the_next_status_answer():
    """Jobs sent since the cached answer count in the load: 20 spawns at once are spread
    (not all sent to the schedd that was least loaded when the collector was asked)."""
    fake = FakeCondor([ad("a", 5, 5), ad("b", 2, 1), ad("c", 0, 3), ad("z", 0, 0)])
    chooser = ScheddChooser(fake, ttl=60)
    picks = Counter(asyncio.run(chooser.choose()) for _ in range(20))
    assert "z" not in picks and fake.calls == 1
    totals = {"a": 10 + picks["a"], "b": 3 + picks["b"], "c": 3 + picks["c"]}
    assert max(totals.values()) - min(totals.values()) <= 1, picks
    chooser.ttl = 0  # a fresh answer counts those jobs itself: the tally starts again
    assert asyncio.run(chooser.choose()) in ("b", "c") and fake.calls == 2


def test_a_submission_a_schedd_refuses_goes_to_the_next():
    fake = FakeCondor([ad("a", 0, 0), ad("b", 9, 9)], Pool(schedds=("a", "b")))
    ScheddChooser._instances.clear()
    tried = []

    async def submit(tools):
        tried.append(tools.pool.schedd)
        if tools.pool.schedd == "a":
            raise ScheddUnavailable(["condor_submit"], 1, "CEDAR:6001:Failed to connect to <x>")
        return "ok"

    assert asyncio.run(submit_somewhere(fake, submit)) == ("b", "ok")
    assert tried == ["a", "b"]
    single = Condor(Pool(schedd="only"))
    assert asyncio.run(submit_somewhere(single, submit)) == (None, "ok")


def test_site_file_lists_schedds_or_a_constraint(tmp_path, monkeypatch):
    def site(text):
        path = tmp_path / "site.toml"
        path.write_text(text)
        return load_site(str(path))

    got = site('[pool]\nschedds = ["s1@h", "s2@h"]\n[notebook]\nsubmit_token = true\n')
    assert got.pool.schedds == ("s1@h", "s2@h") and got.notebook.submit_token
    assert site('[pool]\nschedd_constraint = "IsAnalysis =?= true"\n').pool.schedd_constraint
    assert site("[pool]\n").notebook.submit_token is False  # off by default
    with pytest.raises(SiteError, match=r"pool\.schedd_constraint: '\(\(\(' is not"):
        site("[pool]\nschedd_constraint = '((('\n")
    with pytest.raises(SiteError, match="give one of"):
        site('[pool]\nschedd = "a"\nschedds = ["b"]\n')
    with pytest.raises(SiteError, match=r"pool\.schedds: '-x' is not a schedd name"):
        site('[pool]\nschedds = ["a", "-x"]\n')
    with pytest.raises(SiteError, match=r"pool\.schedd: 'a b' is not a schedd name"):
        site('[pool]\nschedd = "a b"\n')
    with pytest.raises(SiteError, match=r"notebook\.submit_token"):
        site('[notebook]\nsubmit_token = "yes"\n')
    assert Condor(Pool(schedd="x")).for_schedd("y").command("condor_q", [])[1:3] == ["-name", "y"]


def test_the_token_travels_only_in_the_private_file(tmp_path):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
    secret = JobSecret(env={}, rendezvous=Rendezvous.new(), token=token)
    assert JobSecret.loads(secret.dumps()).token == token
    assert "token" not in json.loads(JobSecret(env={}, rendezvous=Rendezvous.new()).dumps())
    bad = json.loads(secret.dumps())
    bad["token"] = "not a token\nX=1"
    with pytest.raises(ProtocolError):
        JobSecret.loads(json.dumps(bad))
    from condorspawner.launcher import token_directory

    env = token_directory(tmp_path, token)
    folder = tmp_path / "tokens.d"
    assert env == {"_CONDOR_SEC_TOKEN_DIRECTORY": str(folder)}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "notebook").stat().st_mode) == 0o600
    assert (folder / "notebook").read_text() == token + "\n"
    assert token_directory(tmp_path, None) == {}


# --- on localpool with two schedds ---------------------------------------------------


def site_file(pool, tmp_path) -> str:
    path = tmp_path / "site.toml"
    path.write_text(
        f'[pool]\nschedds = ["{S1}", "{S2}"]\nbin_dir = "{pool.bin}"\n'
        '[[containers.os]]\nname = "Rocky9"\nlabel = "Rocky 9"\nimage = "/x.sif"\n'
        "default = true\n"
    )
    return str(path)


def test_batch_jobs_spread_by_load_and_a_stopped_schedd_counts_as_unknown(pool, tmp_path):
    pool.restart("--schedds", "2", "--cpus", "1")
    site = load_site(site_file(pool, tmp_path))
    condor = Condor(site.pool)
    ScheddChooser._instances.clear()
    (pool.submit_dir / "s.sub").write_text("executable = /bin/sleep\narguments = 600\nqueue\n")

    async def spread(n: int) -> Counter:
        chooser = ScheddChooser.shared(condor)
        chooser.ttl = 0  # every choice sees the last submission
        where = Counter()
        for _ in range(n):
            name, _ = await submit_somewhere(
                condor, lambda t: t.submit("s.sub", cwd=str(pool.submit_dir))
            )
            where[name] += 1
        return where

    split = asyncio.run(spread(20))
    print(f"20 batch jobs over two schedds: {dict(split)}")
    assert split == {S1: 10, S2: 10}

    env = {**pool.env}
    off = pool.localpool("schedd-off", "schedd2")
    assert off.returncode == 0
    q1 = asyncio.run(condor.for_schedd(S1).q(all_users=True))
    assert len(q1) == 10
    with pytest.raises(ScheddUnavailable):
        asyncio.run(condor.for_schedd(S2).q(all_users=True))
    ScheddChooser._instances.clear()
    after = asyncio.run(spread(4))
    assert after == {S1: 4}  # schedd2 (the less loaded now) does not answer: never chosen
    # condorsub q covers every schedd that answers and names the one that does not
    env["CONDORSPAWNER_SITE"] = site_file(pool, tmp_path)
    result = condorsub(env, "q", "--json", "--all")
    assert result.returncode == 0, result.stderr
    ads = json.loads(result.stdout)
    assert {a["ScheddName"] for a in ads} == {S1} and len(ads) == 14
    assert f"schedd {S2} does not answer" in result.stderr
    pool.localpool("schedd-on", "schedd2")
    both = condorsub(env, "q", "--json", "--all")
    assert Counter(a["ScheddName"] for a in json.loads(both.stdout)) == {S1: 14, S2: 10}
    one = condorsub(env, "q", "--json", "--all", "--name", S2)
    assert {a["ScheddName"] for a in json.loads(one.stdout)} == {S2}


def test_one_watcher_per_schedd_one_down_makes_only_its_jobs_unknown(pool, tmp_path):
    pool.restart("--schedds", "2")
    site = load_site(site_file(pool, tmp_path))
    condor = Condor(site.pool)
    marked = 'executable = /bin/sleep\narguments = 600\nMY.CondorSpawnerHub = "hub-w"\nqueue\n'
    (pool.submit_dir / "m.sub").write_text(marked)
    for name in (S1, S2):
        assert pool.run("condor_submit", "-name", name, "m.sub").returncode == 0

    async def scenario() -> dict:
        QueueWatcher._instances.clear()
        w1 = QueueWatcher.shared(condor.for_schedd(S1), "hub-w", interval=0.2)
        w2 = QueueWatcher.shared(condor.for_schedd(S2), "hub-w", interval=0.2)
        j1, j2 = w1.watch("1.0"), w2.watch("1.0")

        def answered(watcher: QueueWatcher, times: int) -> bool:
            return watcher.queries >= times and watcher.last_error is None

        await wait_until_async(
            lambda: answered(w1, 2) and answered(w2, 2) and j1.status == j2.status == 2,
            20,
            "both schedds' jobs seen running",
        )
        pool.localpool("schedd-off", "schedd2")
        await wait_until_async(lambda: w2.last_error, 10, "schedd2's silence noticed")
        asked = w1.queries
        await wait_until_async(lambda: answered(w1, asked + 2), 10, "schedd1 asked on")
        failing = QueueWatcher.failing("", "hub-w")
        after = (j1.status, j2.status, j2.gone, w2.last_error is not None, w1.last_error)
        await w1.stop()
        await w2.stop()
        return {"after": after, "failing": failing}

    got = asyncio.run(scenario())
    # schedd2's job: its last known state kept (unknown, not gone); schedd1's followed on
    assert got["after"] == (2, 2, False, True, None)
    assert got["failing"] == {S2}
    pool.localpool("schedd-on", "schedd2")


# --- condorsub lab and condorsub dag choose their schedd by load ------------------------


def two_schedds_site(tmp_path) -> str:
    """The test site (Debian12, Rocky9, start timeout 10 s) over both schedds."""
    from tests.harness import site_for_tests

    path = tmp_path / "two-schedds.toml"
    path.write_text(f'[pool]\nschedds = ["{S1}", "{S2}"]\n' + site_for_tests(tmp_path / "work"))
    return str(path)


def load_schedd(pool, name: str, count: int) -> None:
    """``count`` idle jobs on one schedd (they never match: no slot is taken from others)."""
    (pool.submit_dir / "idle.sub").write_text(
        f"executable = /bin/sleep\narguments = 600\nrequirements = false\nqueue {count}\n"
    )
    done = pool.run("condor_submit", "-name", name, "idle.sub")
    assert done.returncode == 0, done.stderr


def on_schedd(pool, name: str, job_id: str, tool: str = "condor_q") -> list[dict]:
    result = pool.run(tool, "-name", name, "-json", job_id)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout or "[]")


def test_a_lab_job_goes_to_the_less_loaded_schedd_and_is_tunnelled_and_ended_there(pool, tmp_path):
    import os
    import signal

    from tests.commands import Lab, call

    pool.restart("--schedds", "2")
    load_schedd(pool, S1, 3)
    lab = Lab(pool, tmp_path, env={"CONDORSPAWNER_SITE": two_schedds_site(tmp_path)})
    try:
        assert f"job {lab.job} to schedd {S2}" in lab.stderr, lab.stderr
        [ad] = on_schedd(pool, S2, lab.job)
        assert (ad["CondorSpawnerKind"], ad["JobStatus"]) == ("notebook", 2)
        notebooks = pool.run(
            "condor_q", "-name", S1, "-json", "-constraint", 'CondorSpawnerKind =?= "notebook"'
        )
        assert notebooks.stdout.strip() == ""  # nothing of it on the loaded schedd
        # the tunnel (condor_ssh_to_job -name S2) reaches the server; the work comes home
        status, answer = call(f"{lab.base}/api/status", token=lab.token)
        assert status == 200 and "started" in answer, answer
        lab.write("made.txt", "on the second schedd\n")
    finally:
        os.killpg(lab.proc.pid, signal.SIGINT)  # Ctrl-C, also when a check above failed
        code = lab.wait()
    assert code == 0, lab.stderr
    assert on_schedd(pool, S2, lab.job) == []  # held, its files back, removed: on S2
    [gone] = on_schedd(pool, S2, lab.job, "condor_history")
    assert gone["JobStatus"] == 3
    assert (pool.submit_dir / "jupyter-lab" / "made.txt").read_text() == "on the second schedd\n"


def test_a_workflow_goes_to_the_less_loaded_schedd_and_resumes_on_its_own(pool, tmp_path):
    import textwrap
    from pathlib import Path

    pool.restart("--schedds", "2")
    load_schedd(pool, S1, 3)
    pool.env["CONDORSPAWNER_SITE"] = two_schedds_site(tmp_path)
    condorsub_bin = CONDORSUB
    d = pool.submit_dir
    (d / "input.txt").write_text("broken\n")
    (d / "check.sh").write_text("#!/bin/sh\ngrep -q good input.txt\n")
    (d / "check.sh").chmod(0o755)
    (d / "wf.toml").write_text(
        textwrap.dedent(
            """\
            [[stage]]
            name = "check"
            executable = "./check.sh"
            files = ["input.txt"]

            [[stage]]
            name = "last"
            executable = "/bin/true"
            """
        )
    )
    failed = pool.run(condorsub_bin, "dag", "wf.toml", "--wait", "--json", timeout=120)
    assert failed.returncode == 1, failed.stderr
    out = json.loads(failed.stdout)
    assert out["schedd"] == S2 and out["exit_code"] == 1
    assert on_schedd(pool, S2, out["job_id"], "condor_history")[0]["JobUniverse"] == 7
    directory = Path(out["directory"])
    # the chooser would now pick the other schedd: the workflow resumes where it ran
    load_schedd(pool, S2, 6)
    (d / "input.txt").write_text("good\n")
    moved = pool.run(condorsub_bin, "dag", "--resume", str(directory), "--schedd", S1)
    assert moved.returncode == 2 and f"ran on schedd {S2}" in moved.stderr, moved.stderr
    resumed = pool.run(condorsub_bin, "dag", "--resume", str(directory), "--wait", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"on schedd {S2}" in resumed.stderr and "resumed from its rescue file" in resumed.stderr
    cluster = resumed.stdout.split()[0]
    [dagman] = on_schedd(pool, S2, cluster, "condor_history")
    assert dagman["JobUniverse"] == 7 and dagman["ExitCode"] == 0


def test_a_workflows_nodes_run_on_the_schedd_its_dagman_runs_on(pool, tmp_path):

    pool.restart("--schedds", "2")
    load_schedd(pool, S1, 3)
    pool.env["CONDORSPAWNER_SITE"] = two_schedds_site(tmp_path)
    (pool.submit_dir / "wf.toml").write_text('[[stage]]\nname = "one"\nexecutable = "/bin/true"\n')
    condorsub_bin = CONDORSUB
    done = pool.run(condorsub_bin, "dag", "wf.toml", "--wait", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["schedd"] == S2 and out["nodes_done"] == 1
    nodes = pool.run(
        "condor_history", "-name", S2, "-json", "-constraint", f"DAGManJobId == {out['cluster']}"
    )
    assert [ad["DAGNodeName"] for ad in json.loads(nodes.stdout or "[]")] == ["one"]
    # --schedd: that one, though the chooser would not take it
    chosen = pool.run(condorsub_bin, "dag", "wf.toml", "--schedd", S1, "--json", timeout=60)
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["schedd"] == S1
