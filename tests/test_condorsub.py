"""condorsub against localpool: every subcommand, bad input, and the same request as the hub."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import htcondor2
import pytest

from condorspawner.render import BatchPayload, NotebookPayload, Renderer
from condorspawner.request import JobRequest
from condorspawner.site import load_site
from tests.commands import QUEUE_COLUMNS
from tests.harness import CONDORSUB, drive_terminal
from tests.pseudo_terminal import PseudoTerminal

pytestmark = pytest.mark.both_pools  # on localpool, and on the real HTCondor as an account


def test_submit_with_every_option_runs_in_the_same_environment(cli, pool):
    (pool.submit_dir / "data.txt").write_text("payload\n")
    (pool.submit_dir / "inputs").mkdir()
    (pool.submit_dir / "inputs" / "a.txt").write_text("from a dir\n")
    (pool.submit_dir / "job.sh").write_text(
        '#!/bin/sh\necho args: "$@"\necho threads: $OMP_NUM_THREADS\necho foo: $FOO\n'
        "echo home: $FROM_HOME\ncat data.txt\ncat $CONDORSUB_DIR_INPUTS/a.txt\n"
    )
    (pool.submit_dir / "job.sh").chmod(0o755)
    pool.env["FROM_HOME"] = "passed on"
    result = cli(
        "submit",
        "--os",
        "debian12",
        "--cpus",
        "2",
        "--memory",
        "1GB",
        "--disk",
        "2GB",
        "--runtime",
        "30m",
        "-e",
        "FOO=bar baz",
        "-e",
        "FROM_HOME",
        "-f",
        "data.txt",
        "-d",
        "inputs",
        "-N",
        "2",
        "--requirements",
        'TARGET.Arch == "X86_64"',
        "--name",
        "my analysis",
        "--wait",
        "--json",
        "./job.sh",
        "one",
        "two words",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert len(out["job_ids"]) == 2 and out["exit_codes"] == dict.fromkeys(out["job_ids"], 0)
    directory = Path(out["directory"])
    # the default job directory is under the current one (here the test's), never the checkout
    assert directory.parent == (pool.submit_dir / "condorsub-jobs").resolve()
    text = (directory / f"job.{out['cluster']}.1.out").read_text()
    # --json names each job's output and error files and the event log, all existing
    assert out["outputs"][f"{out['cluster']}.1"] == {
        "out": str(directory / f"job.{out['cluster']}.1.out"),
        "err": str(directory / f"job.{out['cluster']}.1.err"),
    }
    assert all(Path(p).is_file() for o in out["outputs"].values() for p in o.values())
    assert Path(out["log"]).is_file() and result.stderr == ""
    assert "args: one two words\nthreads: 2\nfoo: bar baz\nhome: passed on\n" in text
    assert "payload\nfrom a dir\n" in text
    ad = json.loads(pool.run("condor_history", "-json", out["job_ids"][0]).stdout)[0]
    assert (ad["RequestCpus"], ad["RequestMemory"], ad["RequestDisk"]) == (2, 1024, 2097152)
    assert (ad["ContainerOS"], ad["MaxRuntime"], ad["JobBatchName"]) == (
        "Debian12",
        1800,
        "my analysis",
    )
    assert ad["Requirements"].startswith('/Expr((TARGET.Arch == "X86_64")')


def test_dry_run_writes_a_description_htcondor_parses(cli, pool):
    result = cli("submit", "--dry-run", "--gpus", "0", "--os", "Rocky9", "/bin/echo", "hi")
    assert result.returncode == 0, result.stderr
    first, _, text = result.stdout.partition("\n")
    directory = Path(first.split(" files in ")[1])
    assert (directory / "job.sub").read_text() == text
    sub = htcondor2.Submit(text)
    assert sub["MY.ContainerOS"] == '"Rocky9"' and sub.getQArgs() == "1"
    assert (directory / "wrapper.sh").stat().st_mode & 0o111
    assert pool.run("condor_q", "-json").stdout == ""  # nothing submitted


def test_wait_ends_with_the_worst_exit_code_and_where_the_output_is(cli, pool):
    jobs = pool.submit_dir.parent / "elsewhere" / "jobs"
    pool.env["CONDORSUB_JOBS"] = str(jobs)  # as the launcher sets it in a notebook job
    result = cli("submit", "--wait", "/bin/sh", "-c", "echo to-out; exit $((3 + 0))")
    assert result.returncode == 3, result.stderr
    job = result.stdout.strip()  # stdout: the job ids alone, for $(condorsub submit ...)
    assert job.endswith(".0") and "\n" not in job
    lines = result.stderr.splitlines()
    (directory,) = {line.split(": ", 1)[1] for line in lines if line.startswith("job directory: ")}
    assert Path(directory).parent == jobs
    # plain lines: where the output will be, the counts as they change, the end, where it is
    assert lines[:2] == [f"job directory: {directory}", f"job {job}: job.{job}.out job.{job}.err"]
    cluster = job.split(".")[0]
    assert f"cluster {cluster}: 0 idle, 0 running, 1 done, 0 held" in lines
    assert lines[-3:] == [f"job {job} exited with 3", *lines[:2]]
    assert (Path(directory) / f"job.{job}.out").read_text() == "to-out\n"
    assert "\x1b" not in result.stderr


def in_a_terminal(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60):
    """Run a command with its stdout and stderr on a 120-column pseudo-terminal;
    (exit code, everything it wrote)."""
    env = {**env, "TERM": "xterm-256color"}
    with PseudoTerminal(argv, env=env, cwd=cwd, size=(40, 120), keyboard=False) as terminal:
        screen = terminal.read_to_end(timeout)
        return terminal.exit_code(), screen


def test_on_a_terminal_wait_is_a_progress_bar_and_q_a_table(cli, pool):
    code, screen = in_a_terminal(
        pool.command(CONDORSUB, "submit", "--wait", "/bin/echo", "hello"), pool.env, pool.submit_dir
    )
    assert code == 0, screen
    assert "\x1b[" in screen, screen  # drawn with colours
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "━" in screen and "1/1" in screen and "0:00:0" in screen  # the bar, count, time
    assert "0 running · 1 done · 0 held" in screen and "EXIT" in screen
    directory = screen.split("job directory: ")[1].split("\r")[0].split("\n")[0]
    job = screen.split()[0]
    assert (Path(directory) / f"job.{job}.out").read_text() == "hello\n"
    sleeper = cli("submit", "/bin/sleep", "600").stdout.strip()
    pool.wait_for(sleeper, lambda a: a["JobStatus"] == 2)
    code, screen = in_a_terminal(pool.command(CONDORSUB, "q"), pool.env, pool.submit_dir)
    assert code == 0 and "\x1b[" in screen, screen  # drawn with colours
    assert "COMMAND" in screen and sleeper in screen and "sleep 600" in screen
    assert cli("rm", sleeper).returncode == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["submit", "--os", "Windows11", "/bin/true"], 2, "--os: 'Windows11' is not offered"),
        (["submit", "--cpus", "64", "/bin/true"], 2, "--cpus: '64' is above the site limit of 4"),
        (["submit", "--memory", "4XB", "/bin/true"], 2, "--memory: '4XB' is not a size"),
        (["submit", "--runtime", "soon", "/bin/true"], 2, "--runtime: 'soon' is not a duration"),
        (["submit", "./missing.sh"], 2, "executable './missing.sh' does not exist"),
        (["submit", "no-such-command"], 2, "is not a command here"),
        (["submit", "-e", "NOT_SET_ANYWHERE", "/bin/true"], 2, "-e NOT_SET_ANYWHERE: not set"),
        (["submit", "-e", "JPY_API_TOKEN=x", "/bin/true"], 2, "'JPY_API_TOKEN' is reserved"),
        (["submit", "-f", "nofile", "/bin/true"], 2, "-f nofile: no such file"),
        (["submit", "--requirements", "(((", "/bin/true"], 2, "is not a single ClassAd"),
        (["rm", "424242.0"], 1, "job 424242.0 not found"),
        (["hold", "x.y"], 2, "'x.y' is not a job id"),
        (["logs", "424242"], 1, "job 424242.0 not found"),
        (["tunnel", "424242.0", "8888"], 1, "no longer in the queue"),
        (["bogus"], 2, "invalid choice"),
    ],
)
def test_bad_input_gives_one_clear_line(cli, args, code, message):
    result = cli(*args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1


def test_q_hold_release_rm_and_logs(cli, pool):
    job = cli("submit", "/bin/sh", "-c", "echo out-line; echo err-line >&2; sleep 600").stdout
    job = job.strip()
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    table = cli("q").stdout.splitlines()
    assert table[0].split() == QUEUE_COLUMNS
    assert job in table[1] and "running" in table[1] and "Rocky9" in table[1]
    assert "/bin/sh -c echo out-line" in table[1]
    assert json.loads(cli("q", "--json", job).stdout)[0]["CondorSpawnerKind"] == "batch"
    assert cli("logs", job).stdout == "out-line\n"
    assert cli("logs", "--err", job).stdout == "err-line\n"
    assert cli("hold", job, "--reason", "wait a bit").stdout == f"Job {job} held\n"
    assert "wait a bit" in pool.ad(job)["HoldReason"]
    assert cli("release", job).stdout == f"Job {job} released\n"
    assert "Job submitted from host" in cli("logs", "--events", job).stdout
    assert cli("rm", job).returncode == 0
    pool.wait_for(job, lambda a: a["JobStatus"] == 3)


def test_containers_and_the_execute_point_config(cli):
    table = cli("containers").stdout
    assert "Rocky9" in table and "Rocky Linux 9" in table and "(default)" in table
    config = cli("containers", "--ep-config").stdout
    assert "SINGULARITY_IMAGE_EXPR = ifThenElse(" in config


def test_shell_in_a_terminal_has_the_jobs_environment(cli, pool):
    text = drive_terminal(
        pool.command(CONDORSUB, "shell", "--os", "Debian12", "--cpus", "3"),
        env=pool.env,
        cwd=pool.submit_dir,
        command=b"echo T=$OMP_NUM_THREADS; cat $_CONDOR_JOB_AD; echo END-OF-$((1 + 1)); exit\n",
        until=b"END-OF-2",
    )
    assert "T=3" in text and 'ContainerOS = "Debian12"' in text and "RequestCpus = 3" in text


async def test_tunnel_to_a_web_server_in_a_job(cli, pool):
    import asyncio
    import urllib.request

    from proxy_tunnel import free_ports

    inner, local = free_ports(2)
    job = cli(
        "submit", sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(inner)
    ).stdout.strip()
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    proc = subprocess.Popen(
        pool.command(CONDORSUB, "tunnel", job, str(inner), "--local-port", str(local)),
        env=pool.env,
        cwd=pool.submit_dir,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.startswith(f"http://127.0.0.1:{local}/ -> port {inner} in job {job}")
        page = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5).read()
        )
        assert b"Directory listing" in page
    finally:
        proc.send_signal(2)
        assert proc.wait(timeout=20) == 0


def test_the_cli_and_the_notebook_form_make_the_same_description(cli):
    site = load_site(cli.site_file)
    result = cli(
        "submit",
        "--dry-run",
        "--os",
        "Debian12",
        "--cpus",
        "2",
        "--memory",
        "2GB",
        "--runtime",
        "2h",
        "-e",
        "A=1",
        "/bin/echo",
        "hi",
    )
    cli_text = result.stdout.partition("\n")[2]
    form = JobRequest.from_form(
        site,
        {
            "container": ["Debian12"],
            "cpus": ["2"],
            "memory": ["2GB"],
            "runtime": ["2h"],
            "environment": ["A=1"],
        },
    )
    notebook = Renderer(site).render(
        form, NotebookPayload(command=("python3",), hub_id="h", user="u")
    )
    batch = Renderer(site).render(form, BatchPayload(command=("/bin/echo", "hi")))
    assert cli_text == batch.submit
    common = [text.split("# --- payload:")[0] for text in (cli_text, notebook.submit)]
    assert common[0].replace("batch", "KIND") == common[1].replace("notebook", "KIND")
