"""localpool against what a real HTCondor 25.0 pool printed, and the job life cycle."""

from __future__ import annotations

import getpass
import json
import os
import re
import time

import htcondor2
import pytest

from proxy_tunnel import free_ports
from tests.harness import case, drive_terminal
from tests.waiting import wait_until

ME = getpass.getuser()
SLEEP = """\
    executable = /bin/sleep
    arguments = {seconds}
    log = job.log
    {extra}
    queue
"""


def sleep_job(seconds: int = 600, extra: str = "") -> str:
    return SLEEP.format(seconds=seconds, extra=extra)


def as_recorded(name: str, stream: str = "stderr") -> str:
    """A recorded output with the recording pool's user and host made ours."""
    return case(name)[stream].replace("alice", ME)


# --- submit ---------------------------------------------------------------------


def test_submit_outputs_match_the_recordings(pool):
    (pool.submit_dir / "sleep.sub").write_text("executable = /bin/sleep\narguments = 600\nqueue\n")
    plain = pool.run("condor_submit", "sleep.sub")
    assert plain.returncode == 0
    assert re.fullmatch(
        r"Submitting job\(s\)\.\n1 job\(s\) submitted to cluster \d+\.\n", plain.stdout
    )
    terse = pool.run("condor_submit", "-terse", "sleep.sub", "-queue", "3")
    # a -queue argument on top of the file's queue statement is refused, as recorded
    assert terse.returncode == 1
    (pool.submit_dir / "noqueue.sub").write_text("executable = /bin/sleep\narguments = 600\n")
    three = pool.run("condor_submit", "-terse", "noqueue.sub", "-queue", "3")
    assert re.fullmatch(r"(\d+)\.0 - \1\.2\n", three.stdout), three.stderr
    stdin = pool.run("condor_submit", "-terse", "-", input="executable=/bin/true\nqueue 2\n")
    assert re.fullmatch(r"(\d+)\.0 - \1\.1\n", stdin.stdout), stdin.stderr


def test_submit_errors_match_the_recordings(pool):
    (pool.submit_dir / "bad.sub").write_text(
        'executable = /bin/echo\narguments = "unterminated\nqueue\n'
    )
    bad = pool.run("condor_submit", "bad.sub")
    recorded = case("submit_bad")
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        recorded["rc"],
        recorded["stdout"],
        recorded["stderr"],
    )

    lines = ["executable = /bin/sleep", "arguments = 600", *["# padding"] * 7, "queue"]
    (pool.submit_dir / "sleep.sub").write_text("\n".join(lines) + "\n")
    conflict = pool.run("condor_submit", "-terse", "sleep.sub", "-queue", "3")
    recorded = case("submit_queue_conflict")
    assert (conflict.returncode, conflict.stdout, conflict.stderr) == (
        recorded["rc"],
        recorded["stdout"],
        recorded["stderr"],
    )

    missing = pool.run("condor_submit", "nosuchfile.sub")
    recorded = case("submit_missing_file")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        recorded["rc"],
        recorded["stdout"],
        recorded["stderr"],
    )
    # nothing was queued by any of them
    assert pool.run("condor_q", "-json", "-allusers").stdout == ""


def test_submit_makes_the_ad_condor_submit_makes(pool):
    (pool.submit_dir / "in.txt").write_text("x")
    job = pool.submit(
        """
        executable = /bin/sleep
        arguments = "600 'two words'"
        environment = "FOO=bar BAZ='two words'"
        request_cpus = 2
        request_memory = 1G
        request_disk = 2G
        output = out.$(Cluster).$(Process)
        MY.ContainerOS = "Debian12"
        +IsNotebookJob = true
        MY.Expr = RequestCpus * 2
        requirements = TARGET.Machine =!= "elsewhere"
        queue
    """,
        "job.sub",
        "-append",
        "+Extra = 42",
    )
    ad = pool.ad(job)
    cluster = job.split(".")[0]
    assert ad["Owner"] == ME and ad["JobStatus"] in (1, 2, 4)  # sleep rejects "two words"
    assert ad["Arguments"] == "600 two' 'words"
    assert ad["Environment"] == "FOO=bar BAZ=two' 'words"
    assert (ad["RequestCpus"], ad["RequestMemory"], ad["RequestDisk"]) == (2, 1024, 2097152)
    assert ad["Out"] == f"out.{cluster}.0"
    assert ad["ContainerOS"] == "Debian12" and ad["IsNotebookJob"] is True
    assert ad["Expr"] == "/Expr(RequestCpus * 2)/"
    assert ad["Extra"] == 42
    assert ad["Requirements"].startswith('/Expr((TARGET.Machine =!= "elsewhere")')
    # (sleep rejects "two words" and ends at once: the ad may be in the history already)
    raw = (
        pool.run("condor_q", "-json", job).stdout or pool.run("condor_history", "-json", job).stdout
    )
    assert '"Requirements": "\\/Expr((TARGET.Machine' in raw
    assert '"Expr": "\\/Expr(RequestCpus * 2)\\/"' in raw


# --- queries --------------------------------------------------------------------


def test_query_outputs_match_the_recordings(pool):
    for name in ("q_empty_json", "q_unknown_job"):
        recorded = case(name)
        result = pool.run(*recorded["cmd"].split())
        assert (result.returncode, result.stdout, result.stderr) == (
            recorded["rc"],
            recorded["stdout"],
            recorded["stderr"],
        )
    bad = pool.run("condor_q", "-json", "-constraint", "(((")
    recorded = case("q_constraint_bad")
    assert bad.returncode == recorded["rc"] == 1 and bad.stdout == ""
    pattern = re.escape(recorded["stderr"]).replace(r"vm", r"\S+")
    pattern = re.sub(r"<127.*?>", "<[^>]+>", pattern)
    assert re.fullmatch(pattern.replace(re.escape("<[^>]+>"), "<[^>]+>"), bad.stderr), bad.stderr
    history = pool.run("condor_history", "99999.0")
    assert (history.returncode, history.stdout) == (0, case("history_unknown")["stdout"])


def test_tables_have_the_recorded_shape(pool):
    empty = pool.run("condor_q").stdout.splitlines()
    recorded = as_recorded("q_empty_table", "stdout").splitlines()
    assert empty[:2] == ["", ""] and empty[2].startswith("-- Schedd: ")
    assert empty[3:] == recorded[3:]
    for _ in range(2):
        pool.submit(sleep_job())
    table = pool.run("condor_q").stdout.splitlines()
    recorded = as_recorded("q_table", "stdout").splitlines()
    assert table[3] == recorded[3]
    assert re.fullmatch(
        rf"{ME} +ID: \d+ +\d\d/\d\d \d\d:\d\d +[_1] +[_1] +[_1] +1 \d+\.0", table[4]
    )
    assert table[-4].startswith("Total for query: 2 jobs; 0 completed, 0 removed, ")
    assert table[-2].startswith("Total for all users: 2 jobs;") and not table[-2].endswith(" ")
    nobatch = pool.run("condor_q", "-nobatch").stdout.splitlines()
    assert nobatch[3] == case("q_table_nobatch")["stdout"].splitlines()[3]
    assert re.fullmatch(
        rf" +\d+\.0   {ME} +\d\d/\d\d \d\d:\d\d +\d\+\d\d:\d\d:\d\d [IR]  0 +"
        r"\d+\.\d sleep 600",
        nobatch[4],
    )


def test_json_long_and_autoformat(pool):
    job = pool.submit(sleep_job(extra="+IsNotebookJob = true"))
    pool.submit(sleep_job())
    recorded = case("q_constraint")["stdout"]
    out = pool.run(
        "condor_q",
        "-json",
        "-attributes",
        "ClusterId,ProcId",
        "-constraint",
        "IsNotebookJob == true",
    ).stdout
    assert (
        out
        == re.sub(
            r'"ClusterId": \d+', f'"ClusterId": {job.split(".")[0]}', recorded.split("\n,\n")[0]
        )
        + "\n]\n"
    )
    af = pool.run("condor_q", "-af", "ClusterId", "ProcId", "Owner", "14").stdout.splitlines()
    assert af[0] == f"{job.split('.')[0]} 0 {ME} 14"
    # -af takes attributes up to the next option: a constraint after it still applies
    for wanted, expected in (("true", [f"{job.split('.')[0]}"]), ("false", [])):
        selected = pool.run(
            "condor_q", "-af", "ClusterId", "-constraint", f"IsNotebookJob == {wanted}"
        )
        assert selected.stdout.split() == expected, selected
    long = pool.run("condor_q", "-l", job).stdout
    assert f'Owner = "{ME}"\n' in long and "IsNotebookJob = true\n" in long
    keys = [line.split(" = ")[0] for line in long.splitlines() if line]
    assert keys == sorted(keys, key=str.lower)


def test_job_actions_match_the_recordings(pool):
    for tool, name in (("condor_rm", "rm_unknown"), ("condor_hold", "hold_unknown")):
        result = pool.run(tool, "99999.0")
        recorded = case(name)
        assert (result.returncode, result.stdout, result.stderr) == (
            recorded["rc"],
            recorded["stdout"],
            recorded["stderr"],
        )
    job = pool.submit(sleep_job())
    held = pool.run("condor_hold", "-reason", "held by test", job)
    assert (held.returncode, held.stdout) == (0, f"Job {job} held\n")
    ad = pool.wait_for(job, lambda a: a["JobStatus"] == 5)
    actor = "condor" if ME == "root" else ME  # root's tools act as condor (q_held_by_root)
    assert ad["HoldReason"] == f"held by test (by user {actor})" and ad["HoldReasonCode"] == 1
    released = pool.run("condor_release", job)
    assert (released.returncode, released.stdout) == (0, f"Job {job} released\n")
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    cluster = job.split(".")[0]
    removed = pool.run("condor_rm", "-reason", "removed by test", cluster)
    assert removed.stdout == f"All jobs in cluster {cluster} have been marked for removal\n"
    ad = pool.wait_for(job, lambda a: a["JobStatus"] == 3 and "CompletionDate" in a)
    assert pool.run("condor_q", "-json", job).stdout == ""
    pool.submit(sleep_job())
    by_user = pool.run("condor_rm", ME)
    assert by_user.stdout == f'All jobs of user "{ME}" have been marked for removal\n'
    assert pool.run("condor_q", "-allusers", "-bogus").returncode == 1


# --- life cycle ----------------------------------------------------------------


def test_a_job_that_fits_no_slot_stays_idle_with_a_reason(pool):
    big = pool.submit(sleep_job(extra="request_cpus = 64"))
    other_os = pool.submit(sleep_job(extra='MY.ContainerOS = "Windows11"'))
    fits = pool.submit(sleep_job(extra='MY.ContainerOS = "debian12"'))
    pool.wait_for(fits, lambda a: a["JobStatus"] == 2)
    for job in (big, other_os):
        ad = pool.wait_for(job, lambda a: "LastRejMatchReason" in a)
        assert ad["JobStatus"] == 1 and ad["LastRejMatchReason"] == "no match found"
    analysis = pool.run("condor_q", "-better-analyze", big).stdout
    assert "1 slots are rejected by your job's requirements" in analysis
    status = pool.run("condor_status", "-json").stdout
    slots = json.loads(status)
    assert slots[0]["ContainerOSes"] == ["Rocky9", "Debian12"]
    assert any(s.get("JobId") == fits for s in slots)


def test_exit_code_event_log_and_history(pool):
    job = pool.submit("""
        executable = /bin/sh
        arguments = "-c 'echo out-line; echo err-line >&2; exit 3'"
        should_transfer_files = YES
        output = job.out
        error = job.err
        log = job.log
        queue
    """)
    ad = pool.wait_for(job, lambda a: a["JobStatus"] == 4)
    assert (ad["ExitCode"], ad["ExitBySignal"]) == (3, False)
    recorded = json.loads(case("history_exit3_json")["stdout"])[0]
    attrs = "ClusterId,ProcId,JobStatus,ExitCode,ExitBySignal,CompletionDate"
    ours = json.loads(pool.run("condor_history", "-json", "-attributes", attrs, job).stdout)[0]
    assert sorted(ours) == sorted(recorded)
    assert (pool.submit_dir / "job.out").read_text() == "out-line\n"
    assert (pool.submit_dir / "job.err").read_text() == "err-line\n"
    events = list(htcondor2.JobEventLog(str(pool.submit_dir / "job.log")).events(stop_after=0))
    kinds = [e.type for e in events]
    assert kinds[0] == htcondor2.JobEventType.SUBMIT
    assert htcondor2.JobEventType.EXECUTE in kinds
    assert kinds[-1] == htcondor2.JobEventType.JOB_TERMINATED
    assert events[-1]["ReturnValue"] == 3
    limited = pool.run("condor_history", "-limit", "1").stdout.splitlines()
    assert limited[0] == case("history_limit")["stdout"].splitlines()[0] and len(limited) == 2


def test_vacate_brings_output_back_and_the_job_runs_again(pool):
    job = pool.submit("""
        executable = /bin/sh
        arguments = "-c 'mkdir -p out; echo precious > out/result.txt; sleep 600'"
        should_transfer_files = YES
        transfer_output_files = out
        when_to_transfer_output = ON_EXIT_OR_EVICT
        +SpoolOnEvict = False
        log = job.log
        queue
    """)
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)

    def written() -> bool:  # the job has made its output: the vacate must bring it back
        return pool.run("condor_ssh_to_job", job, "cat out/result.txt").stdout == "precious\n"

    wait_until(written, 20, "the job wrote out/result.txt")
    vacated = pool.run("condor_vacate_job", job)
    assert (vacated.returncode, vacated.stdout) == (0, f"Job {job} vacated\n")
    pool.wait_for(job, lambda a: a["NumJobStarts"] == 2 and a["JobStatus"] == 2)
    assert (pool.submit_dir / "out" / "result.txt").read_text() == "precious\n"
    log = (pool.submit_dir / "job.log").read_text()
    assert "Job was evicted. Code 1009 Subcode 0" in log


def test_removed_jobs_transfer_nothing(pool):
    job = pool.submit("""
        executable = /bin/sh
        arguments = "-c 'echo lost > lost.txt; sleep 600'"
        should_transfer_files = YES
        when_to_transfer_output = ON_EXIT_OR_EVICT
        log = job.log
        queue
    """)
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    pool.run("condor_rm", job)
    pool.wait_for(job, lambda a: a["JobStatus"] == 3 and "CompletionDate" in a)
    assert not (pool.submit_dir / "lost.txt").exists()
    assert "Job was aborted.\n\tvia condor_rm (by user" in (pool.submit_dir / "job.log").read_text()


def test_periodic_expressions_and_the_runtime_limit(pool):
    removed = pool.submit(sleep_job(extra="periodic_remove = (time() - QDate) > 1"))
    held = pool.submit(sleep_job(extra="periodic_hold = JobStatus == 2"))
    limited = pool.submit(sleep_job(extra="allowed_execute_duration = 1"))
    ad = pool.wait_for(removed, lambda a: a["JobStatus"] == 3)
    assert "PeriodicRemove" in ad["RemoveReason"]
    ad = pool.wait_for(held, lambda a: a["JobStatus"] == 5)
    assert ad["HoldReasonCode"] == 3 and "PeriodicHold" in ad["HoldReason"]
    ad = pool.wait_for(limited, lambda a: a["JobStatus"] == 5, timeout=20)
    assert ad["HoldReasonCode"] == 47
    assert ad["HoldReason"] == "The job exceeded allowed execute duration of 0+00:00:01"


def test_periodic_hold_with_its_own_reason_and_no_warning(pool):
    """The templates' runtime limit: periodic_hold on MaxRuntime with periodic_hold_reason."""
    (pool.submit_dir / "limit.sub").write_text(
        sleep_job(
            extra="MY.MaxRuntime = 1\n"
            "periodic_hold = (JobStatus == 2)"
            " && (time() - JobCurrentStartExecutingDate > MaxRuntime)\n"
            'periodic_hold_reason = "over the runtime limit"'
        )
    )
    submitted = pool.run("condor_submit", "-terse", "limit.sub")
    assert submitted.returncode == 0 and "unused" not in submitted.stderr, submitted.stderr
    ad = pool.wait_for(submitted.stdout.split()[0], lambda a: a["JobStatus"] == 5, timeout=20)
    assert (ad["HoldReasonCode"], ad["HoldReason"]) == (3, "over the runtime limit")


def test_pool_restart_loses_no_job(pool):
    running = pool.submit(sleep_job(3))
    queued = pool.submit(sleep_job(extra="request_cpus = 64"))
    pool.wait_for(running, lambda a: a["JobStatus"] == 2)
    assert pool.localpool("stop").returncode == 0
    time.sleep(0.5)
    assert pool.ad(queued)["JobStatus"] == 1
    assert pool.ad(running)["JobStatus"] == 2
    assert pool.localpool("start").returncode == 0
    ad = pool.wait_for(running, lambda a: a["JobStatus"] == 4, timeout=20)
    assert ad["ExitCode"] == 0 and ad["NumJobStarts"] == 1
    assert pool.ad(queued)["JobStatus"] == 1


def test_chirp_from_inside_a_job(pool, tmp_path):
    script = pool.submit_dir / "chirp.py"
    script.write_text(
        "import htchirp, subprocess, os\n"
        "with htchirp.HTChirp() as c:\n"
        "    c.set_job_attr('NotebookPort', '12345')\n"
        "    print(c.get_job_attr('ClusterId'))\n"
        "subprocess.run([os.environ['_CONDOR_BIN'] + '/condor_chirp', 'set_job_attr',"
        " 'HubApiPort', '4242'], check=True)\n"
    )
    job = pool.submit(f"""
        executable = {os.sys.executable}
        transfer_executable = false
        arguments = chirp.py
        transfer_input_files = chirp.py
        should_transfer_files = YES
        want_io_proxy = true
        output = chirp.out
        error = chirp.err
        log = job.log
        queue
    """)
    ad = pool.wait_for(job, lambda a: a["JobStatus"] == 4)
    assert ad["NotebookPort"] == 12345 and ad["HubApiPort"] == 4242, (
        pool.submit_dir / "chirp.err"
    ).read_text()
    assert (pool.submit_dir / "chirp.out").read_text().strip() == job.split(".")[0]
    assert (
        "Setting job attribute NotebookPort to 12345" in (pool.submit_dir / "job.log").read_text()
    )


# --- condor_ssh_to_job and the job's own network ---------------------------------


def test_ssh_to_job_errors_match_the_recordings(pool):
    result = pool.run("condor_ssh_to_job", "99999.0", "true")
    recorded = case("ssh_unknown")
    assert (result.returncode, result.stdout, result.stderr) == (
        recorded["rc"],
        recorded["stdout"],
        recorded["stderr"],
    )
    idle = pool.submit(sleep_job(extra="request_cpus = 64"))
    result = pool.run("condor_ssh_to_job", idle, "true")
    recorded = case("ssh_idle")
    assert (result.returncode, result.stdout, result.stderr) == (
        recorded["rc"],
        recorded["stdout"],
        recorded["stderr"],
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="job network namespaces need root")
def test_a_job_is_cut_off_from_the_host_but_reachable_through_ssh(pool, host_server):
    inner, local = free_ports(2)
    probe = (
        f"import urllib.request, http.server, threading\n"
        f"try:\n"
        f"    urllib.request.urlopen('http://127.0.0.1:{host_server}/', timeout=2)\n"
        f"    print('host reachable')\n"
        f"except OSError as err:\n"
        f"    print('host unreachable', err)\n"
        f"class H(http.server.BaseHTTPRequestHandler):\n"
        f"    def do_GET(self):\n"
        f"        self.send_response(200); self.end_headers(); self.wfile.write(b'in-job')\n"
        f"http.server.HTTPServer(('127.0.0.1', {inner}), H).serve_forever()\n"
    )
    (pool.submit_dir / "probe.py").write_text(probe)
    job = pool.submit(f"""
        executable = {os.sys.executable}
        transfer_executable = false
        arguments = "-u probe.py"
        transfer_input_files = probe.py
        should_transfer_files = YES
        output = probe.out
        error = probe.err
        queue
    """)
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)

    def probe_said() -> str | None:
        out = pool.run("condor_ssh_to_job", job, "cat _condor_stdout").stdout
        return out if "host" in out else None

    out = wait_until(probe_said, 20, "the probe says what it reached")
    assert "host unreachable" in out
    import subprocess

    tunnel = subprocess.Popen(
        [
            "condor_ssh_to_job",
            "-ssh",
            f"ssh -N -L 127.0.0.1:{local}:127.0.0.1:{inner} -oExitOnForwardFailure=yes",
            job,
        ],
        env=pool.env,
        cwd=pool.submit_dir,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        import urllib.request

        def page() -> bytes | None:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=2).read()
            except OSError:
                return None

        assert wait_until(page, 20, "the job's web server through the tunnel") == b"in-job"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{inner}/", timeout=2)
    finally:
        os.killpg(tunnel.pid, 15)
        tunnel.wait(timeout=10)


def test_ssh_command_runs_in_the_jobs_environment(pool):
    job = pool.submit(sleep_job(extra="should_transfer_files = YES\nrequest_cpus = 2"))
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    result = pool.ssh_to_job(
        job, "echo in-job; pwd; echo $_CONDOR_SCRATCH_DIR; echo $OMP_NUM_THREADS"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "in-job" and lines[1] == lines[2] and "/execute/dir_" in lines[1]
    assert lines[3] == "2"


def test_bad_commands_leave_the_queue_untouched(pool):
    pool.submit(sleep_job())
    last = pool.submit(sleep_job(extra="request_cpus = 64"))
    attrs = "ClusterId,ProcId,JobStatus,Cmd,Args,RequestCpus,Owner,QDate"

    def jobs():
        return pool.run("condor_q", "-json", "-allusers", "-attributes", attrs).stdout

    before = jobs()
    (pool.submit_dir / "bad.sub").write_text('executable = /bin/echo\narguments = "x\nqueue\n')
    (pool.submit_dir / "junk.sub").write_text(
        "executable = /bin/echo\nthis is not a command\nqueue\n"
    )
    (pool.submit_dir / "badexpr.sub").write_text("executable = /bin/echo\nMY.X = (((\nqueue\n")
    for args in (
        ["condor_submit", "bad.sub"],
        ["condor_submit", "junk.sub"],
        ["condor_submit", "badexpr.sub"],
        ["condor_submit", "-bogus"],
        ["condor_submit", "-terse", "/no/such.sub"],
        ["condor_q", "-constraint", "((("],
        ["condor_q", "-bogus"],
        ["condor_rm", "424242.0"],
        ["condor_hold", "424242"],
        ["condor_rm"],
        ["condor_release", "-bogus"],
        ["condor_history", "-limit", "x"],
        ["condor_ssh_to_job", "424242.0"],
    ):
        result = pool.run(*args)
        assert result.returncode != 0, args
        assert result.stderr.strip(), args
        assert "Traceback" not in result.stderr, result.stderr
    assert jobs() == before
    # no failed submission used up a cluster id
    assert pool.submit(sleep_job()) == f"{int(last.split('.')[0]) + 1}.0"
    (pool.submit_dir / "noexe.sub").write_text("executable = /no/such/program\nqueue\n")
    missing = pool.run("condor_submit", "noexe.sub")
    assert missing.returncode == 1
    assert "ERROR: Executable file /no/such/program does not exist" in missing.stderr


def test_ssh_answers_retry_just_after_start_and_auto_retry_waits(tmp_path):
    from tests.harness import Pool

    p = Pool(tmp_path / "pool", tmp_path)
    assert (
        p.localpool("start", "--cycle-seconds", "0.05", "--ssh-ready-delay", "1.5").returncode == 0
    )
    try:
        job = p.submit(sleep_job())
        p.wait_for(job, lambda a: a["JobStatus"] == 2)
        early = p.run("condor_ssh_to_job", job, "true")
        assert (early.returncode, early.stderr) == (1, case("ssh_idle")["stderr"])
        started = time.monotonic()
        waited = p.run("condor_ssh_to_job", "-auto-retry", job, "echo ok")
        assert (waited.returncode, waited.stdout) == (0, "ok\n"), waited.stderr
        assert time.monotonic() - started < 15
    finally:
        p.localpool("stop", "--remove-jobs")


def test_interactive_submit_gives_a_shell_in_the_job(pool):
    text = drive_terminal(
        ["condor_submit", "-interactive", "-append", "request_cpus = 3"],
        env=pool.env,
        cwd=pool.submit_dir,
        command=b"echo DONE-$OMP_NUM_THREADS; exit\n",
        until=b"DONE-3",
    )
    assert "Submitting job(s)." in text and "1 job(s) submitted to cluster" in text
    assert "Waiting for job to start..." in text
    assert "DONE-3" in text, text
    # the job leaves the queue when the shell ends
    wait_until(lambda: pool.run("condor_q", "-json").stdout == "", 10, "the job left the queue")


def test_format_getenv_and_remote_initialdir(pool, tmp_path):
    # what batchspawner's CondorSpawner submits and asks (the benchmarks' anchor)
    run_dir = tmp_path / "home"
    run_dir.mkdir()
    pool.env["FROM_SUBMITTER"] = "kept"
    script = (
        f"Executable = /bin/sh\nArguments = \"-c 'echo $FROM_SUBMITTER $X; pwd; sleep 600'\"\n"
        f"Remote_Initialdir = {run_dir}\nOutput = {run_dir}/out\nError = {run_dir}/err\n"
        'ShouldTransferFiles = False\nGetEnv = True\nEnvironment = "X=given"\nQueue\n'
    )
    result = pool.run("condor_submit", input=script)
    assert result.returncode == 0, result.stderr
    cluster = re.search(r"submitted to cluster (\d+)", result.stdout).group(1)
    pool.wait_for(f"{cluster}.0", lambda a: a["JobStatus"] == 2)
    out = pool.run(
        "condor_q",
        cluster,
        "-format",
        "%s, ",
        "JobStatus",
        "-format",
        "%s",
        "RemoteHost",
        "-format",
        "\\n",
        "True",
    ).stdout
    assert re.fullmatch(r"2, slot1_\d+@\S+\n", out), out
    wait_until(lambda: (run_dir / "out").read_text(), 10, "the job's output")
    assert (run_dir / "out").read_text() == f"kept given\n{run_dir}\n"


def test_remove_jobs_leaves_no_job_process_behind(pool):
    job = pool.submit(sleep_job(extra="arguments = 4242"))
    pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    wait_until((pool.root / "jobs" / job / "job.pid").exists, 10, "the job's pid file")
    group = int((pool.root / "jobs" / job / "job.pid").read_text())
    assert pool.localpool("stop", "--remove-jobs").returncode == 0

    def group_gone() -> bool:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(group_gone, 5, f"the job's process group {group} is gone", 0.1)
