"""localpool with several schedds: names, own queues, -name on every tool, one stopped.

Messages for a name the collector does not know and for a schedd that does
not answer are HTCondor's (its tools' source; tests/data/htcondor/README.md).
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.waiting import wait_until

HOST = socket.gethostname().split(".")[0] or "localhost"
S1, S2 = f"schedd1@{HOST}", f"schedd2@{HOST}"
SLEEP = "executable = /bin/sleep\narguments = {seconds}\nrequest_cpus = {cpus}\nqueue {count}\n"


@pytest.fixture
def two(pool):
    """The ``pool`` fixture's pool, started again with two schedds."""
    pool.restart("--schedds", "2")
    return pool


def submit(pool, *name: str, seconds: int = 600, cpus: int = 1, count: int = 1) -> str:
    (pool.submit_dir / "s.sub").write_text(SLEEP.format(seconds=seconds, cpus=cpus, count=count))
    result = pool.run("condor_submit", "-terse", *name, "s.sub")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[0]


def q(pool, *args: str) -> list[dict]:
    """The ads, without the schedd's clock (ServerTime: the second it answered)."""
    result = pool.run("condor_q", "-json", *args)
    assert result.returncode == 0, result.stderr
    ads = json.loads(result.stdout) if result.stdout.strip() else []
    return [{k: v for k, v in ad.items() if k != "ServerTime"} for ad in ads]


def test_one_schedd_keeps_the_hosts_name(pool):
    result = pool.run("condor_status", "-schedd", "-af", "Name", "Machine")
    assert result.stdout.split() == [HOST, HOST]
    job = submit(pool)
    assert q(pool, job)[0]["GlobalJobId"].startswith(f"{HOST}#{job}#")


def test_each_schedd_has_its_own_ids_queue_and_header(two):
    first = submit(two)
    second = submit(two, "-name", S2)
    short = submit(two, "-name", "schedd2")  # the part before @ names it too
    assert (first, second, short) == ("1.0", "1.0", "2.0")
    assert [a["GlobalJobId"].split("#")[0] for a in q(two)] == [S1]
    assert [a["ClusterId"] for a in q(two, "-name", S2)] == [1, 2]
    assert q(two, "-name", S1) == q(two)
    table = two.run("condor_q", "-name", S2).stdout
    assert f"-- Schedd: {S2} : <127.0.0.1:9618?..." in table
    held = two.run("condor_hold", "-name", S2, "2.0")
    assert held.returncode == 0 and held.stdout == "Job 2.0 held\n"
    assert [a["JobStatus"] for a in q(two, "-name", S2)][1] == 5
    assert q(two, "1.0")[0]["JobStatus"] != 5  # schedd1's 1.0 is another job
    assert two.run("condor_release", "-name", S2, "2.0").stdout == "Job 2.0 released\n"
    edited = two.run("condor_qedit", "-name", S2, "2.0", "Color", '"red"')
    assert edited.returncode == 0, edited.stderr
    assert q(two, "-name", S2, "2.0")[0]["Color"] == "red"
    assert "Color" not in q(two, "1.0")[0]
    assert (
        two.run("condor_rm", "-name", S2, "2").stdout
        == "All jobs in cluster 2 have been marked for removal\n"
    )
    two.wait_for("1.0", lambda a: a["JobStatus"] == 2)

    def in_history():  # the removal reaches the history when the schedd acts
        gone = two.run("condor_history", "-name", S2, "-af", "ClusterId", "JobStatus")
        return gone if gone.stdout.strip() else None

    gone = wait_until(in_history, 30, "the removed job in the second schedd's history")
    assert gone.returncode == 0 and gone.stdout.split() == ["2", "3"]
    assert two.run("condor_history", "-af", "ClusterId").stdout == ""


def test_condor_status_schedd_in_the_recordings_format(two):
    submit(two, count=2)
    submit(two, "-name", S2, cpus=64)  # fits nowhere: idle
    two.run("condor_hold", "-name", S2, "1.0")
    submit(two, "-name", S2, cpus=64)
    two.wait_for("1.1", lambda a: a["JobStatus"] == 2)
    table = two.run("condor_status", "-schedd")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["Name", "Machine", "RunningJobs", "IdleJobs", "HeldJobs"]
    assert lines[1] == ""
    assert lines[2].split() == [S1, HOST, "2", "0", "0"]
    assert lines[3].split() == [S2, HOST, "0", "1", "1"]
    # the figures right-aligned under their headings, as condor_status prints them
    for line in lines[2:4]:
        for heading in ("RunningJobs", "IdleJobs", "HeldJobs"):
            end = lines[0].index(heading) + len(heading)
            assert line[end - 1] != " " and (len(line) == end or line[end] == " ")
    assert lines[5].split() == ["TotalRunningJobs", "TotalIdleJobs", "TotalHeldJobs"]
    assert lines[7].split() == ["Total", "2", "1", "1"]
    ads = json.loads(two.run("condor_status", "-schedd", "-json").stdout)
    assert [a["Name"] for a in ads] == [S1, S2]
    for key in (
        "MyType",
        "MyAddress",
        "TotalRunningJobs",
        "TotalIdleJobs",
        "TotalHeldJobs",
        "RecentDaemonCoreDutyCycle",
        "CondorVersion",
    ):
        assert key in ads[1], key
    assert ads[1]["MyType"] == "Scheduler" and "sock=schedd2_localpool" in ads[1]["MyAddress"]
    af = two.run(
        "condor_status",
        "-schedd",
        "-af",
        "Name",
        "TotalIdleJobs",
        "-constraint",
        "TotalIdleJobs > 0",
    )
    assert af.stdout == f"{S2} 1\n"
    long = two.run("condor_status", "-schedd", "-l").stdout
    assert f'Name = "{S2}"' in long and "TotalHeldJobs = 1" in long


def test_one_execute_point_serves_both_schedds(two):
    """Four cpus in the pool: two 2-cpu jobs run in all, whichever schedd queued them."""
    submit(two, cpus=2, count=2)
    submit(two, "-name", S2, cpus=2, count=2)
    two.wait_for("1.1", lambda a: a["JobStatus"] == 2)
    running = [a for a in q(two) + q(two, "-name", S2) if a["JobStatus"] == 2]
    assert len(running) == 2
    slots = two.run("condor_status", "-af", "Name").stdout.split()
    assert len(slots) == 3  # the partitionable slot and two dynamic ones
    two.run("condor_rm", "1")
    two.wait_for("1.0", lambda a: a["JobStatus"] == 3 or a.get("CompletionDate") is not None)

    wait_until(lambda: all(a["JobStatus"] == 2 for a in q(two, "-name", S2)), 20, "both run")
    assert [a["JobStatus"] for a in q(two, "-name", S2)] == [2, 2]


@pytest.mark.parametrize(
    ("cmd", "stderr"),
    [
        (["condor_q", "-name", "nope"], "Error: Collector has no record of schedd/submitter\n"),
        (
            ["condor_submit", "-name", "nope", "s.sub"],
            "\nERROR: Can't find address of schedd nope\n",
        ),
        (["condor_rm", "-name", "nope", "1.0"], "Error: cannot get address of schedd nope\n"),
        (["condor_hold", "-name", "nope", "1"], "Error: cannot get address of schedd nope\n"),
        (["condor_release", "-name", "nope", "1"], "Error: cannot get address of schedd nope\n"),
        (
            ["condor_qedit", "-name", "nope", "1.0", "A", "1"],
            "condor_qedit: No such schedd named nope in local pool\n",
        ),
        (
            ["condor_history", "-name", "nope"],
            "Unable to locate remote schedd (name=nope, pool=).\n",
        ),
        (
            ["condor_ssh_to_job", "-name", "nope", "1.0"],
            "No such schedd named nope in local pool\n",
        ),
    ],
)
def test_a_name_the_pool_does_not_know(two, cmd, stderr):
    (two.submit_dir / "s.sub").write_text(SLEEP.format(seconds=1, cpus=1, count=1))
    result = two.run(*cmd)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", stderr)
    assert q(two) == [] and q(two, "-name", S2) == []  # nothing queued anywhere


def test_a_schedd_that_does_not_answer(two):
    ours = submit(two)
    theirs = submit(two, "-name", S2)
    two.wait_for(ours, lambda a: a["JobStatus"] == 2)
    assert q(two, "-name", S2, theirs)[0]["JobStatus"] == 2
    off = two.localpool("schedd-off", "schedd2")
    assert off.returncode == 0, off.stderr
    addr = "<127.0.0.1:9618?addrs=127.0.0.1-9618&alias=" + HOST + "&noUDP&sock=schedd2_localpool>"
    cedar = f"CEDAR:6001:Failed to connect to {addr}\n"
    result = two.run("condor_q", "-name", S2)
    assert (result.returncode, result.stderr) == (
        1,
        f"\n-- Failed to fetch ads from: {addr} : {S2}\n{cedar}",
    )
    result = two.run("condor_submit", "-name", S2, "s.sub")
    assert result.stderr == f"\nERROR: Failed to connect to queue manager {S2}\n{cedar}"
    assert two.run("condor_rm", "-name", S2, theirs).stderr == cedar
    assert two.run("condor_ssh_to_job", "-name", S2, theirs, "true").stderr == cedar
    # the other schedd answers; the stopped one's ad stays, its job keeps running
    assert [a["ClusterId"] for a in q(two)] == [1]
    names = two.run("condor_status", "-schedd", "-af", "Name").stdout.split()
    assert names == [S1, S2]
    assert two.localpool("schedd-on", S2).returncode == 0
    back = q(two, "-name", S2)
    assert [(a["ClusterId"], a["JobStatus"]) for a in back] == [(1, 2)]
    assert "schedd2@" in two.localpool("status").stdout
    assert two.localpool("schedd-off", "schedd9").returncode == 1


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="ssh into jobs needs the pool's sshd")
def test_ssh_to_a_job_of_the_second_schedd(two):
    job = submit(two, "-name", S2)

    wait_until(lambda: q(two, "-name", S2, job)[0]["JobStatus"] == 2, 20, "the job runs")
    result = two.ssh_to_job("-name", S2, job, "echo in-job")
    assert (result.returncode, result.stdout) == (0, "in-job\n"), result.stderr
    # schedd1 has no job 1.0: without -name the tool asks schedd1
    missing = two.run("condor_ssh_to_job", job, "true")
    assert missing.returncode == 1
