"""condorsub dag: workflow files, rendered like condorsub submit, run by DAGMan on localpool."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import htcondor2
import pytest

from tests.harness import CONDORSUB, node_log_events, site_for_tests


@pytest.fixture
def offline(tmp_path):
    """condorsub with the test site and no pool (rendering and checking only)."""
    site_file = tmp_path / "site.toml"
    site_file.write_text(site_for_tests(tmp_path / "work"))
    env = {
        **os.environ,
        "CONDORSPAWNER_SITE": str(site_file),
        "CONDORSUB_JOBS": str(tmp_path / "jobs"),
    }

    def run(*args: str):
        return subprocess.run(
            [CONDORSUB, *args], cwd=tmp_path, env=env, text=True, capture_output=True, timeout=60
        )

    run.dir = tmp_path
    return run


def script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)


def check_dag_grammar(text: str) -> dict:
    """A DAG input file as the manual's grammar has it (JOB, PARENT/CHILD, RETRY, comments).

    Written from the manual's "DAGMan Workflows" chapter, independently of
    localpool's parser: returns nodes, edges and retries, or fails the test.
    """
    nodes: dict[str, tuple[str, str | None]] = {}
    edges: list[tuple[list[str], list[str]]] = []
    retries: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        key = words[0].upper()
        if key == "JOB":
            assert len(words) in (3, 5), f"line {number}: JOB name file [DIR dir]: {line}"
            assert words[1] not in nodes, f"line {number}: node {words[1]} twice"
            assert not re.search(r"[+\s]", words[1]) and words[1].upper() not in ("PARENT", "CHILD")
            if len(words) == 5:
                assert words[3].upper() == "DIR", f"line {number}: {line}"
            nodes[words[1]] = (words[2], words[4] if len(words) == 5 else None)
        elif key == "PARENT":
            upper = [w.upper() for w in words]
            assert upper.count("CHILD") == 1, f"line {number}: one CHILD: {line}"
            at = upper.index("CHILD")
            parents, children = words[1:at], words[at + 1 :]
            assert parents and children, f"line {number}: {line}"
            assert all(n in nodes for n in parents + children), f"line {number}: unknown node"
            edges.append((parents, children))
        elif key == "RETRY":
            assert len(words) == 3 and words[2].isdigit(), f"line {number}: RETRY name N: {line}"
            assert words[1] in nodes, f"line {number}: unknown node {words[1]}"
            retries[words[1]] = int(words[2])
        else:
            pytest.fail(f"line {number}: {words[0]} is not a DAG keyword this file should use")
    return {"nodes": nodes, "edges": edges, "retries": retries}


THREE_STAGES = """\
name = "analysis"

[defaults]
os = "Debian12"
memory = "256MB"

[[stage]]
name = "prepare"
executable = "./step.sh"
args = ["prepare", "{marks}"]

[[stage]]
name = "fit"
  [[stage.job]]
  name = "a"
  executable = "./step.sh"
  args = ["fit-a", "{marks}"]
  cpus = 2
  [[stage.job]]
  name = "b"
  executable = "./step.sh"
  args = ["fit-b", "{marks}"]
  env = {{ SEED = "7" }}
  retries = 2

[[stage]]
name = "collect"
executable = "./step.sh"
args = ["collect", "{marks}"]
"""


@pytest.mark.both_pools
def test_a_three_stage_workflow_with_a_parallel_stage_runs_in_order(cli, pool):
    d = pool.submit_dir
    marks = d / "marks.txt"
    # the fit stage's two jobs overlap even where the second waits a negotiation cycle (a
    # real schedd reuses the claim of the stage before for one of them at once)
    script(
        d / "step.sh", 'echo "$1 $SEED" >> "$2"\ncase "$1" in fit*) sleep 8;; *) sleep 1;; esac\n'
    )
    (d / "wf.toml").write_text(THREE_STAGES.format(marks=marks))
    result = cli("dag", "wf.toml", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["exit_code"] == 0 and out["nodes_done"] == 4 and out["nodes_failed"] == 0
    assert out["nodes"] == ["prepare", "fit-a", "fit-b", "collect"]
    directory = Path(out["directory"])
    events = [(c, n) for c, _, n in node_log_events(directory / "workflow.dag.nodes.log")]
    start = {n: i for i, (c, n) in reversed(list(enumerate(events))) if c == 1}
    end = {n: i for i, (c, n) in enumerate(events) if c == 5}
    assert set(start) == set(end) == {"prepare", "fit-a", "fit-b", "collect"}
    assert end["prepare"] < min(start["fit-a"], start["fit-b"])
    assert max(end["fit-a"], end["fit-b"]) < start["collect"]
    assert start["fit-a"] < end["fit-b"] and start["fit-b"] < end["fit-a"]  # side by side
    lines = [line.strip() for line in marks.read_text().splitlines()]
    assert lines[0] == "prepare" and lines[-1] == "collect"
    assert sorted(lines[1:3]) == ["fit-a", "fit-b 7"]
    # each node is a condorsub batch job of its own directory, and knows its DAGMan
    history = json.loads(
        pool.run(
            "condor_history", "-json", "-constraint", f"DAGManJobId == {out['cluster']}"
        ).stdout
    )
    assert sorted(ad["DAGNodeName"] for ad in history) == ["collect", "fit-a", "fit-b", "prepare"]
    assert all(ad["ContainerOS"] == "Debian12" for ad in history)
    assert {ad["DAGNodeName"]: ad["RequestCpus"] for ad in history}["fit-a"] == 2
    assert (directory / "fit-a" / "job.sub").is_file() and (
        directory / "fit-a" / "wrapper.sh"
    ).is_file()
    assert "All jobs Completed!" in (directory / "workflow.dag.dagman.out").read_text()


@pytest.mark.both_pools
def test_a_failed_node_leaves_a_rescue_file_and_resume_finishes_the_workflow(cli, pool):
    d = pool.submit_dir
    marks = d / "marks.txt"
    (d / "input.txt").write_text("broken\n")
    script(d / "step.sh", 'echo "$1" >> "$2"\n')
    script(d / "check.sh", 'echo check >> "$1"\ngrep -q good input.txt\n')
    (d / "wf.toml").write_text(
        textwrap.dedent(
            f"""\
            [[stage]]
            name = "first"
            executable = "./step.sh"
            args = ["first", "{marks}"]

            [[stage]]
            name = "check"
            executable = "./check.sh"
            args = ["{marks}"]
            files = ["input.txt"]
            retries = 1

            [[stage]]
            name = "last"
            executable = "./step.sh"
            args = ["last", "{marks}"]
            """
        )
    )
    failed = cli("dag", "wf.toml", "--wait")
    assert failed.returncode == 1, failed.stderr
    directory = Path(re.search(r"condorsub dag --resume (\S+)", failed.stderr).group(1))
    assert marks.read_text().split() == ["first", "check", "check"]  # one retry, then failed
    rescue = (directory / "workflow.dag.rescue001").read_text()
    assert "# Nodes that failed: 1\n#   check,<ENDLIST>\n" in rescue and "DONE first\n" in rescue
    (d / "input.txt").write_text("good\n")  # the cause, fixed
    resumed = cli("dag", "--resume", str(directory), "--wait", "--json")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["resumed"] and out["exit_code"] == 0 and out["nodes_done"] == 3
    assert marks.read_text().split() == ["first", "check", "check", "check", "last"]
    again = cli("dag", "--resume", str(directory))
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "nothing to resume" in again.stderr


def test_dry_run_renders_every_node_like_submit_and_a_well_formed_dag(offline):
    d = offline.dir
    script(d / "step.sh", "true\n")
    (d / "inputs").mkdir()
    (d / "data.txt").write_text("x\n")
    (d / "wf.toml").write_text(
        THREE_STAGES.format(marks="/tmp/unused")
        + '\n[[stage]]\nname = "extra"\nexecutable = "./step.sh"\nfiles = ["data.txt"]\n'
        'dirs = ["inputs"]\ncount = 3\nruntime = "30m"\n'
    )
    result = offline("dag", "--dry-run", "--json", "wf.toml")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    grammar = check_dag_grammar(out["dag"])
    assert list(grammar["nodes"]) == ["prepare", "fit-a", "fit-b", "collect", "extra"]
    assert all(f == "job.sub" and d == n for n, (f, d) in grammar["nodes"].items())
    assert grammar["edges"] == [
        (["prepare"], ["fit-a", "fit-b"]),
        (["fit-a", "fit-b"], ["collect"]),
        (["collect"], ["extra"]),
    ]
    assert grammar["retries"] == {"fit-b": 2}
    directory = Path(out["directory"])
    assert (directory / "workflow.dag").read_text() == out["dag"]
    for node, text in out["nodes"].items():
        sub = htcondor2.Submit(text)
        assert sub["executable"] == "wrapper.sh" and sub.getQArgs().strip()
        assert sub["MY.CondorSpawnerKind"] == '"batch"'
        assert (directory / node / "job.sub").read_text() == text
    fit_a = htcondor2.Submit(out["nodes"]["fit-a"])
    assert fit_a["request_cpus"] == "2" and fit_a["MY.ContainerOS"] == '"Debian12"'
    assert "SEED=7" in htcondor2.Submit(out["nodes"]["fit-b"])["environment"]
    extra = htcondor2.Submit(out["nodes"]["extra"])
    assert extra.getQArgs().strip() == "3" and extra["MY.MaxRuntime"] == "1800"
    assert "inputs.dir.tar.gz" in extra["transfer_input_files"]
    assert str(d / "data.txt") in extra["transfer_input_files"]
    # the same job from condorsub submit gets the same description, but for its label
    single = offline(
        "submit",
        "--dry-run",
        "--json",
        "--os",
        "Debian12",
        "--memory",
        "256MB",
        "--cpus",
        "2",
        "--name",
        "fit-a",
        "./step.sh",
        "fit-a",
        "/tmp/unused",
    )
    assert single.returncode == 0, single.stderr
    alone = htcondor2.Submit(json.loads(single.stdout)["submit"])
    assert {k: alone[k] for k in alone.keys()} == {k: fit_a[k] for k in fit_a.keys()}  # noqa: SIM118


BAD = [
    ("name = \n", "not valid TOML"),
    ("[[stage]]\nname = 'a'\n", "stage 'a': no job"),
    ("title = 'x'\n[[stage]]\nexecutable = '/bin/true'\n", "unknown top-level key 'title'"),
    (
        "[[stage]]\nname = 'fit'\nexecutable = '/bin/true'\nmemroy = '2GB'\n",
        "stage 'fit': unknown key 'memroy'",
    ),
    (
        "[[stage]]\nname = 'fit'\n[[stage.job]]\nname = 'b'\nargs = ['x']\n",
        "stage 'fit', job 'b': 'executable' is missing",
    ),
    (
        "[[stage]]\nname = 'fit'\nexecutable = '/bin/true'\nmemory = '99TB'\n",
        "stage 'fit': memory:",
    ),
    ("[[stage]]\nname = 'fit'\nexecutable = '/bin/true'\nos = 'Windows95'\n", "stage 'fit': os:"),
    (
        "[[stage]]\nname = 'fit'\n[[stage.job]]\nname = 'signal'\nexecutable = '/bin/true'\n"
        "memory = '99TB'\n[[stage.job]]\nexecutable = '/bin/true'\n",
        "stage 'fit', job 'signal': memory: '99TB' is above the site limit",
    ),
    (
        "[[stage]]\nname = 's'\nexecutable = './missing.sh'\n",
        "stage 's': executable './missing.sh' does not exist",
    ),
    (
        "[[stage]]\nname = 's'\nexecutable = '/bin/true'\nfiles = ['nope.txt']\n",
        "stage 's': files: 'nope.txt': no such file",
    ),
    (
        "[[stage]]\nname = 's'\nexecutable = '/bin/true'\ndirs = ['nodir']\n",
        "stage 's': dirs: 'nodir': not a directory",
    ),
    (
        "[[stage]]\nname = 's'\nexecutable = '/bin/true'\nretries = 'x'\n",
        "stage 's': retries must be a whole number",
    ),
    (
        "[[stage]]\nname = 's'\nexecutable = '/bin/true'\nargs = 3\n",
        "stage 's': args must be a list",
    ),
    (
        "[[stage]]\nname = 's'\nexecutable = '/bin/true'\n" * 2,
        "the name 's' is used twice",
    ),
    ("[[stage]]\nname = 'a b'\nexecutable = '/bin/true'\n", "is not a plain name"),
    (
        "[[stage]]\nname = 's'\nexecutable = '/bin/true'\nenv = { 'A-B' = 'x' }\n",
        "env: 'A-B' is not a variable name",
    ),
    ("", "no [[stage]] tables"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_workflow_file_gets_one_line_naming_stage_and_problem(offline, text, message):
    (offline.dir / "wf.toml").write_text(text)
    result = offline("dag", "--dry-run", "wf.toml")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("condorsub: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    jobs = offline.dir / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())  # nothing left behind


def test_resume_of_something_that_is_not_a_workflow_is_one_line(offline):
    result = offline("dag", "--resume", str(offline.dir))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "not a workflow directory" in result.stderr
    missing = offline("dag")
    assert missing.returncode == 2 and "give a workflow file" in missing.stderr


def test_resume_with_an_unreadable_recorded_schedd_is_one_line(offline):
    """workflow.schedd sits in the user's directory: whatever is there, one line, no traceback."""
    directory = offline.dir / "wf"
    directory.mkdir()
    (directory / "workflow.dag").write_text("JOB one one/job.sub\n")
    (directory / "workflow.dag.rescue001").write_text("DONE one\n")
    recorded = directory / "workflow.schedd"
    for content in (b"\xff\xfe not text\n", b"a b\n", None):
        if content is None:
            recorded.unlink()
            recorded.mkdir()  # not a file at all
        else:
            recorded.write_bytes(content)
        result = offline("dag", "--resume", str(directory))
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("condorsub: ") and result.stderr.count("\n") == 1
        assert "workflow.schedd" in result.stderr and "Traceback" not in result.stderr
