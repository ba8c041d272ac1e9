"""localpool's condor_submit_dag and DAGMan: what real DAGMan documents and prints.

The outputs here come from HTCondor's manual and source, not a recording
(tests/data/htcondor/README.md, "DAGMan"): the condor_submit_dag block, the
scheduler-universe DAGMan job and its DAG_* attributes, DAGManJobId on
nodes, the node log, dagman.out, RETRY, the partial rescue DAG and its use
on resubmission, removal of the node jobs with the DAGMan job.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import htcondor2

from tests.harness import node_log_events
from tests.waiting import wait_until

STAMP = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d ")


def node_script(directory: Path, name: str, body: str = "") -> None:
    """A node's job: appends its name to runs.txt (in the submit dir), then ``body``."""
    (directory / f"{name}.sh").write_text(
        f"#!/bin/sh\necho {name} >> {directory}/runs.txt\nsleep 0.3\n{body}\n"
    )
    (directory / f"{name}.sh").chmod(0o755)
    (directory / f"{name}.sub").write_text(
        f"executable = {name}.sh\nlog = {name}.log\noutput = {name}.out\nerror = {name}.err\n"
        "request_memory = 64\nqueue\n"
    )


def write_dag(directory: Path, text: str, name: str = "wf.dag") -> None:
    (directory / name).write_text(text)


def wait_gone(pool, cluster: int, timeout: float = 90, **options) -> dict:
    """Wait until the DAGMan job has left the queue; its history ad."""

    def gone() -> bool:
        q = pool.run("condor_q", "-json", str(cluster), **options)
        return q.returncode == 0 and not q.stdout.strip()

    wait_until(gone, timeout, f"DAGMan job {cluster} leaves the queue", 0.3)
    history = pool.run("condor_history", "-json", f"{cluster}.0", **options)
    return json.loads(history.stdout)[0]


def submit_dag(pool, *args: str) -> tuple[int, str]:
    result = pool.run("condor_submit_dag", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"^1 job\(s\) submitted to cluster (\d+)\.$", result.stdout, re.M)
    assert match, result.stdout
    return int(match.group(1)), result.stdout


def test_a_diamond_runs_in_order_with_dagman_in_the_queue(pool):
    d = pool.submit_dir
    for name in "ABCD":
        node_script(d, name, "sleep 1" if name in "BC" else "")
    write_dag(
        d,
        "# diamond\nJOB A A.sub\nJOB B B.sub\njob C C.sub\nJOB D D.sub\n"
        "PARENT A CHILD B C\nParent B C Child D\n",
    )
    cluster, out = submit_dag(pool, "wf.dag")
    assert out.startswith("\n" + "-" * 71 + "\n")
    assert "File for submitting this DAG to HTCondor           : wf.dag.condor.sub\n" in out
    assert "Log of DAGMan debugging messages                 : wf.dag.dagman.out\n" in out
    assert "Log of the life of condor_dagman itself          : wf.dag.dagman.log\n" in out
    assert "\nSubmitting job(s).\n1 job(s) submitted to cluster" in out
    assert out.endswith("-" * 71 + "\n")
    dagman = json.loads(pool.run("condor_q", "-json", str(cluster)).stdout)[0]
    assert dagman["JobUniverse"] == 7 and dagman["Cmd"].endswith("/condor_dagman")
    assert dagman["OtherJobRemoveRequirements"] == f"DAGManJobId =?= {cluster}"
    # the nodes carry their DAGMan's id and name while they are queued
    seen: dict[str, int] = {}

    def two_nodes_seen() -> bool:
        ads = json.loads(pool.run("condor_q", "-json").stdout or "[]")
        seen.update({a["DAGNodeName"]: a["DAGManJobId"] for a in ads if "DAGNodeName" in a})
        return len(seen) >= 2

    wait_until(two_nodes_seen, 60, lambda: f"two of the DAG's nodes queued; seen {seen}")
    assert set(seen.values()) == {cluster}, seen
    ad = wait_gone(pool, cluster)
    assert ad["ExitCode"] == 0
    assert (ad["DAG_NodesTotal"], ad["DAG_NodesDone"], ad["DAG_NodesFailed"]) == (4, 4, 0)
    assert (ad["DAG_NodesQueued"], ad["DAG_NodesReady"], ad["DAG_NodesUnready"]) == (0, 0, 0)
    assert ad["DAG_Status"] == 0
    # order, from the default node log: A before B and C, both before D
    events = node_log_events(d / "wf.dag.nodes.log")
    first_exec = {n: i for i, (c, _, n) in reversed(list(enumerate(events))) if c == 1}
    last_end = {n: i for i, (c, _, n) in enumerate(events) if c == 5}
    assert set(first_exec) == set("ABCD")
    assert last_end["A"] < first_exec["B"] and last_end["A"] < first_exec["C"]
    assert max(last_end["B"], last_end["C"]) < first_exec["D"]
    # B and C ran side by side: each started before the other ended
    assert first_exec["B"] < last_end["C"] and first_exec["C"] < last_end["B"]
    assert sorted((d / "runs.txt").read_text().split()) == list("ABCD")
    text = (d / "wf.dag.dagman.out").read_text().splitlines()
    assert all(STAMP.match(line) for line in text)
    assert any(line.endswith("All jobs Completed!") for line in text)
    assert re.search(r"\(condor_DAGMAN\) pid \d+ EXITING WITH STATUS 0$", text[-1])
    assert any("Event: ULOG_JOB_TERMINATED for HTCondor Node D (" in line for line in text)
    assert any(
        line.endswith(" Done     Pre   Queued    Post   Ready   Un-Ready   Failed   Futile")
        for line in text
    )
    assert not (d / "wf.dag.lock").exists()


def test_a_failing_node_is_retried_then_leaves_a_rescue_dag_that_a_resubmission_runs(pool):
    d = pool.submit_dir
    node_script(d, "A")
    node_script(d, "B", "test -e ok.txt")
    node_script(d, "C")
    write_dag(
        d, "JOB A A.sub\nJOB B B.sub\nJOB C C.sub\nPARENT A CHILD B\nPARENT B CHILD C\nRETRY B 1\n"
    )
    cluster, _ = submit_dag(pool, "wf.dag")
    ad = wait_gone(pool, cluster)
    assert ad["ExitCode"] == 1 and ad["DAG_Status"] == 2
    assert (ad["DAG_NodesDone"], ad["DAG_NodesFailed"], ad["DAG_NodesFutile"]) == (1, 1, 1)
    assert (d / "runs.txt").read_text().split() == ["A", "B", "B"]
    rescue = (d / "wf.dag.rescue001").read_text()
    assert rescue.startswith("# Rescue DAG file, created after running\n#   the wf.dag DAG file\n")
    assert "# Rescue DAG version: 2.0.1 (partial)\n" in rescue
    assert (
        "# Total number of Nodes: 3\n# Nodes premarked DONE: 1\n# Nodes that failed: 1\n" in rescue
    )
    assert "#   B,<ENDLIST>\n\nDONE A\n" in rescue
    out = (d / "wf.dag.dagman.out").read_text()
    assert "Retrying node B (retry #1 of 1)..." in out
    assert re.search(r"Node B job proc \(\d+\.0\.0\) failed with status 1\.", out)
    assert "Job proc" in out and "(after 1 node retries)" in out
    assert out.rstrip().endswith("EXITING WITH STATUS 1")
    # fix the cause, submit the same DAG file: the rescue DAG runs, A is not run again
    (d / "ok.txt").write_text("fixed\n")
    result = pool.run("condor_submit_dag", "wf.dag")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\nRunning rescue DAG 1\n" + "-" * 71)
    cluster2 = int(re.search(r"submitted to cluster (\d+)\.", result.stdout).group(1))
    ad = wait_gone(pool, cluster2)
    assert ad["ExitCode"] == 0 and ad["DAG_NodesDone"] == 3
    assert (d / "runs.txt").read_text().split() == ["A", "B", "B", "B", "C"]
    assert "USING RESCUE DAG wf.dag.rescue001" in (d / "wf.dag.dagman.out").read_text()


def test_existing_files_stop_a_resubmission_unless_forced_and_no_submit_writes_only(pool):
    d = pool.submit_dir
    node_script(d, "A")
    write_dag(d, "JOB A A.sub\n")
    result = pool.run("condor_submit_dag", "-no_submit", "wf.dag")
    assert result.returncode == 0, result.stderr
    assert (
        "-no_submit given, not submitting DAG to HTCondor.  You can do this with:\n"
        '"condor_submit wf.dag.condor.sub"\n' in result.stdout
    )
    sub = htcondor2.Submit((d / "wf.dag.condor.sub").read_text())
    assert sub["universe"] == "scheduler" and sub["executable"].endswith("condor_dagman")
    assert "-AutoRescue 1 -DoRescueFrom 0 -Dag wf.dag" in sub["arguments"]
    assert pool.run("condor_q", "-json").stdout.strip() == ""
    again = pool.run("condor_submit_dag", "wf.dag")
    assert again.returncode == 1
    assert 'ERROR: "wf.dag.condor.sub" already exists.\n' in again.stderr
    assert 'use the "-f" option to force them to be overwritten' in again.stderr
    cluster, _ = submit_dag(pool, "-f", "wf.dag")
    assert wait_gone(pool, cluster)["ExitCode"] == 0


def test_removing_the_dagman_job_removes_its_nodes_and_writes_a_rescue_dag(pool):
    d = pool.submit_dir
    node_script(d, "A", "sleep 60")
    node_script(d, "B")
    write_dag(d, "JOB A A.sub\nJOB B B.sub\nPARENT A CHILD B\n")
    cluster, _ = submit_dag(pool, "wf.dag")

    def running_node() -> dict | None:
        ads = json.loads(pool.run("condor_q", "-json").stdout or "[]")
        running = [a for a in ads if a.get("DAGManJobId") == cluster and a["JobStatus"] == 2]
        return running[0] if running else None

    node = wait_until(running_node, 60, "node A runs")
    removed = pool.run("condor_rm", str(cluster))
    assert removed.returncode == 0, removed.stderr
    wait_gone(pool, cluster)
    node_id = f"{node['ClusterId']}.{node['ProcId']}"
    wait_until(
        lambda: not pool.run("condor_q", "-json", node_id).stdout.strip(), 30, "node A removed"
    )
    gone = json.loads(pool.run("condor_history", "-json", node_id).stdout)[0]
    assert gone["JobStatus"] == 3
    assert f"<OtherJobRemoveRequirements = DAGManJobId =?= {cluster}>" in gone["RemoveReason"]
    wait_until((d / "wf.dag.rescue001").exists, 10, "DAGMan's rescue file")
    assert "# Nodes premarked DONE: 0\n" in (d / "wf.dag.rescue001").read_text()


def test_a_bad_dag_file_is_refused_with_its_line(pool):
    write_dag(pool.submit_dir, "JOB A A.sub\nPARENT A CHILD Z\n")
    (pool.submit_dir / "A.sub").write_text("executable = /bin/true\nqueue\n")
    result = pool.run("condor_submit_dag", "wf.dag")
    assert result.returncode == 1
    assert "wf.dag (line 2): Unknown Job Z" in result.stderr
    assert pool.run("condor_q", "-json").stdout.strip() == ""


def test_an_ordinary_users_dag_runs_as_that_user(system_pool, unix_users):
    alice = unix_users("a")
    home = system_pool.home(alice)
    for name in ("A", "B"):
        system_pool.write(alice, f"{name}.sh", f"#!/bin/sh\nid -un >> {home}/who.txt\n")
        (home / f"{name}.sh").chmod(0o755)
        system_pool.write(
            alice, f"{name}.sub", f"executable = {name}.sh\nlog = {name}.log\nqueue\n"
        )
    system_pool.write(alice, "wf.dag", "JOB A A.sub\nJOB B B.sub\nPARENT A CHILD B\n")
    result = system_pool.run("condor_submit_dag", "wf.dag", user=alice)
    assert result.returncode == 0, result.stderr
    cluster = int(re.search(r"submitted to cluster (\d+)\.", result.stdout).group(1))
    ad = wait_gone(system_pool, cluster)
    dagman_out = (home / "wf.dag.dagman.out").read_text()
    assert ad["Owner"] == alice and ad["JobUniverse"] == 7 and ad["ExitCode"] == 0, dagman_out
    assert ad["DAG_NodesDone"] == 2
    assert (home / "who.txt").read_text().split() == [alice, alice]
    uid = (home / "wf.dag").stat().st_uid
    for name in ("wf.dag.dagman.out", "wf.dag.nodes.log", "wf.dag.condor.sub", "wf.dag.lib.out"):
        assert (home / name).stat().st_uid == uid, name  # written as alice, not root
