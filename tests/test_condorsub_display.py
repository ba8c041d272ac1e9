"""condorsub's drawing, on hand-made ads: workflows as one line, rich on a terminal, plain
lines when piped, and where the outputs land. No pool needed."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from condorspawner.cli.context import job_dir
from condorspawner.cli.display import (
    WaitView,
    print_outputs,
    print_queue,
    queue_rows,
    workflow_counts,
)
from tests.commands import QUEUE_COLUMNS

NOW = 1_800_000_000

# condorsub q's columns, as a user reads them (piped: one line of names)


def ad(cluster: int, status: int = 1, schedd: str = "vm", **extra) -> dict:
    return {
        "ClusterId": cluster,
        "ProcId": 0,
        "Owner": "alice",
        "QDate": NOW - 60,
        "JobStatus": status,
        "Cmd": "/bin/sleep",
        "Arguments": "60",
        "RequestCpus": 1,
        "RequestMemory": 512,
        "GlobalJobId": f"{schedd}#{cluster}.0#{NOW}",
        **extra,
    }


def dag(cluster: int, schedd: str = "vm", **counts) -> dict:
    return ad(
        cluster,
        2,
        schedd,
        Cmd="/usr/bin/condor_dagman",
        Arguments="-p 0 -f -l . -Lockfile diamond.dag.lock -Dag diamond.dag",
        JobBatchName="diamond.dag+10",
        **{f"DAG_Nodes{k}": v for k, v in counts.items()},
        DAG_Status=0,
    )


def workflow() -> list[dict]:
    """A DAG of 8 nodes: 3 done, 1 failed, one node running, one idle, one held,
    (so one waiting), beside an ordinary job; given out of order."""
    return [
        ad(20),
        ad(12, 1, DAGManJobId=10),
        dag(10, Total=8, Done=3, Failed=1, Queued=3, Ready=0),
        ad(13, 5, DAGManJobId=10),
        ad(11, 2, DAGManJobId=10),
    ]


def test_a_workflow_is_one_line_with_its_node_counts():
    rows = queue_rows(workflow(), nodes=False, now=NOW)
    assert [r.cells[0] for r in rows] == ["10.0", "20.0"]
    assert rows[0].workflow and rows[0].status == "running"
    assert rows[0].cells[8] == (
        "DAG diamond.dag+10: 3/8 done, 1 running, 1 idle, 1 failed, 1 held, 1 waiting"
    )


def test_nodes_asked_for_are_shown_beneath_their_workflow():
    rows = queue_rows(workflow(), nodes=True, now=NOW)
    assert [(r.cells[0], r.depth) for r in rows] == [
        ("10.0", 0),
        ("11.0", 1),
        ("12.0", 1),
        ("13.0", 1),
        ("20.0", 0),
    ]


def test_node_counts_without_the_nodes_come_from_dagman():
    # e.g. `condorsub q 10`: only the DAGMan job's ad; its queued count stands in
    counts = workflow_counts(dag(10, Total=5, Done=1, Failed=0, Queued=2), [])
    assert counts == {
        "total": 5,
        "done": 1,
        "running": 0,
        "idle": 0,
        "held": 0,
        "failed": 0,
        "queued": 2,
        "waiting": 2,
    }
    # a DAGMan job that has not written its counts yet is still a workflow
    fresh = ad(30, Cmd="/usr/bin/condor_dagman", Arguments="-Dag 'my flow.dag'")
    (row,) = queue_rows([fresh], nodes=False, now=NOW)
    assert row.workflow and row.cells[8] == "DAG my flow.dag: 0/0 done, 0 running, 0 idle, 0 failed"


def test_workflows_are_matched_within_their_own_schedd():
    # cluster 10 is a DAG on schedd a; on schedd b, cluster 10 is an ordinary job
    ads = [
        dag(10, "a", Total=1, Done=0, Failed=0, Queued=1),
        ad(11, 2, "a", DAGManJobId=10),
        ad(10, 2, "b"),
        ad(12, 2, "b", DAGManJobId=10),  # its DAGMan job is not a workflow ad here
        ad(14, 1, "c", DAGManJobId=99),  # its DAGMan job is not in the list
    ]
    rows = queue_rows(ads, nodes=False, now=NOW)
    assert [r.cells[0] for r in rows] == ["10.0", "10.0", "12.0", "14.0"]
    assert "1 running" in rows[0].cells[8] and not rows[1].workflow


def test_plain_queue_when_piped(capsys):
    print_queue(workflow(), terminal=False, now=NOW)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == QUEUE_COLUMNS
    assert len(lines) == 3 and "\x1b" not in "".join(lines)
    words = lines[1].split()  # SUBMITTED is two words (date, time)
    assert (words[0], words[1], words[5]) == ("10.0", "alice", "running")
    assert lines[1].endswith(
        "DAG diamond.dag+10: 3/8 done, 1 running, 1 idle, 1 failed, 1 held, 1 waiting"
    )
    assert lines[2].startswith("20.0") and lines[2].endswith("sleep 60")
    print_queue([], terminal=False)
    assert capsys.readouterr().out.splitlines()[1] == "(no jobs)"


def test_rich_queue_on_a_terminal():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system="standard")
    print_queue(workflow(), nodes=True, console=console, now=NOW)
    text = out.getvalue()
    assert "\x1b[" in text  # drawn, not plain
    assert "\x1b[32mrunning" in text and "\x1b[1;31mheld" in text
    assert "└ 11.0" in text and "DAG diamond.dag+10: 3/8 done" in text
    plain = Console(file=io.StringIO(), width=160)
    print_queue([], console=plain)
    assert plain.file.getvalue() == "(no jobs)\n"


def test_rich_wait_draws_a_progress_bar_with_counts_and_elapsed_time():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    view = WaitView(12, 3, console=console)
    view.note("before the first counts, no bar")
    assert "cluster 12" not in out.getvalue()
    view.update({"idle": 1, "running": 1, "held": 0, "done": 1})
    view.note("job 12.2 is held: [no] reason")
    view.update({"idle": 0, "running": 0, "held": 1, "done": 2})
    view.close()
    text = out.getvalue()
    assert "job 12.2 is held: [no] reason" in text  # printed above the bar, markup left alone
    last = text.rsplit("\r", 1)[-1]
    assert "cluster 12" in last and "━" in last and "2/3" in last
    assert "0 idle · 0 running · 2 done · 1 held" in last
    assert "0:00:0" in last  # elapsed time


def test_plain_wait_prints_a_line_per_change_and_nothing_with_json(capsys):
    view = WaitView(12, 2, terminal=False)
    for counts in ({"idle": 2, "running": 0}, {"idle": 2, "running": 0}, {"idle": 0, "running": 2}):
        view.update({**counts, "held": 0, "done": 0})
    view.note("job 12.1 is held: why")
    view.close()
    assert capsys.readouterr().err.splitlines() == [
        "cluster 12: 2 idle, 0 running, 0 done, 0 held",
        "cluster 12: 0 idle, 2 running, 0 done, 0 held",
        "job 12.1 is held: why",
    ]
    quiet = WaitView(12, 2, quiet=True, terminal=True)
    quiet.update({"idle": 1, "running": 0, "held": 0, "done": 1})
    quiet.note("x")
    quiet.close()
    assert capsys.readouterr() == ("", "")


def test_outputs_plain_lines(capsys, tmp_path):
    names = {"7.0": ("job.7.0.out", "job.7.0.err"), "7.1": ("job.7.1.out", "job.7.1.err")}
    print_outputs(tmp_path, names, terminal=False)
    print_outputs(tmp_path, names, codes={"7.0": 0, "7.1": 3}, terminal=False)
    assert capsys.readouterr().err.splitlines() == [
        f"job directory: {tmp_path}",
        "job 7.0: job.7.0.out job.7.0.err",
        "job 7.1: job.7.1.out job.7.1.err",
        "job 7.0 exited with 0",
        "job 7.1 exited with 3",
        f"job directory: {tmp_path}",
        "job 7.0: job.7.0.out job.7.0.err",
        "job 7.1: job.7.1.out job.7.1.err",
    ]


def test_rich_outputs_keep_the_directory_on_one_line():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=40, color_system=None)
    long = Path("/scratch/dir_1234/jupyter/condorsub-jobs/20260101-120000-analysis")
    print_outputs(long, {"7.0": ("job.7.0.out", "job.7.0.err")}, codes={"7.0": 0}, console=console)
    text = out.getvalue()
    assert f"job directory: {long}\n" in text
    assert "EXIT" in text and "job.7.0.out" in text
    out.truncate(0)
    print_outputs(long, {"7.0": ("job.7.0.out", "job.7.0.err")}, brief=True, console=console)
    assert out.getvalue().strip("\x00") == f"job directory: {long}\n"
    print_outputs(long, {"7.0": ("job.7.0.out", "job.7.0.err")}, brief=True, terminal=False)


@pytest.mark.parametrize("code", ["--help", "piped q"])
def test_rich_is_not_loaded_for_help_or_plain_output(code):
    script = (
        "import sys\n"
        "from condorspawner.cli import main\n"
        "from condorspawner.cli.display import print_queue\n"
        "try:\n"
        "    main(['--help']) if sys.argv[1] == '--help' else print_queue([], terminal=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('rich' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, code], capture_output=True, text=True, timeout=60
    )
    assert result.stderr.strip() == "False", result.stderr


@pytest.mark.parametrize("setting", ["relative", "absolute", "home", ""])
def test_job_directory_follows_condorsub_jobs(setting, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    value, parent = {
        "relative": ("sub/jobs", here / "sub" / "jobs"),
        "absolute": (
            str(tmp_path / "work" / "condorsub-jobs"),
            tmp_path / "work" / "condorsub-jobs",
        ),
        "home": ("~/jobs", tmp_path / "home" / "jobs"),
        "": ("", here / "condorsub-jobs"),
    }[setting]
    monkeypatch.setenv("CONDORSUB_JOBS", value)
    first, second = job_dir("", "a.sh"), job_dir("", "a.sh")
    assert first.parent == parent.resolve() and first.is_absolute() and first.is_dir()
    assert first != second and first.name.endswith("-a.sh")
    assert sorted(os.listdir(parent)) == sorted([first.name, second.name])
