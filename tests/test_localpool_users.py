"""localpool with several real accounts, as on an HTCondor access point, and the real
HTCondor beside it (``backend``): the same assertions hold on both.

alice submits, bob acts: the answers are those a real HTCondor 9.1 pool gave
(tests/data/htcondor, cases other_user_*); root is the queue super-user; no
user reaches the pool's state or, through a symlink, a root-only file.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from proxy_tunnel import free_port
from tests.harness import CONDORSUB, case, drive_terminal, site_for_tests
from tests.waiting import wait_until

SLEEP = "executable = /bin/sleep\narguments = 300\nqueue\n"


@pytest.fixture
def alice_job(unix_users, system_pool):
    """(alice, bob, job id of alice's running ``sleep 300``)."""
    alice, bob = unix_users("a"), unix_users("b")
    job = system_pool.submit(SLEEP, user=alice)
    system_pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    return alice, bob, job


def recorded(name: str, job: str, **names: str) -> tuple[int, str, str]:
    """(rc, stdout, stderr) of a recorded case with our job id and account names."""
    rec = case(name)
    cluster = job.split(".")[0]

    def ours(text: str) -> str:
        text = text.replace("8.0", job).replace("cluster 8", f"cluster {cluster}")
        text = re.sub(r"^8 ", f"{cluster} ", text, flags=re.MULTILINE)  # -af ClusterId ...
        for recorded_name, name_here in names.items():
            text = text.replace(recorded_name, name_here)
        return text

    return rec["rc"], ours(rec["stdout"]), ours(rec["stderr"])


def outcome(result: subprocess.CompletedProcess) -> tuple[int, str, str]:
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("case_name", "command"),
    [
        ("other_user_rm", ["condor_rm"]),
        ("other_user_hold", ["condor_hold", "-reason", "x"]),
        ("other_user_release", ["condor_release"]),
        ("other_user_vacate", ["condor_vacate_job"]),
        ("other_user_ssh", ["condor_ssh_to_job"]),
    ],
)
def test_another_users_job_is_refused_as_htcondor_refuses(
    system_pool, alice_job, case_name, command
):
    _alice, bob, job = alice_job
    args = [*command, job, "true"] if case_name == "other_user_ssh" else [*command, job]
    result = system_pool.run(*args, user=bob)
    assert outcome(result) == recorded(case_name, job, bob=bob)
    ad = system_pool.ad(job)
    # untouched: still in its first run (the real schedd counts the start a little later)
    assert ad["JobStatus"] == 2 and ad["NumJobStarts"] <= 1 and "HoldReason" not in ad


def test_remove_all_by_a_user_without_jobs(system_pool, alice_job):
    _alice, bob, job = alice_job
    result = system_pool.run("condor_rm", "-all", user=bob)
    assert outcome(result) == recorded("other_user_rm_all", job)
    assert system_pool.ad(job)["JobStatus"] == 2


def test_reading_the_queue_is_open_to_all(system_pool, alice_job):
    alice, bob, job = alice_job
    cluster = job.split(".")[0]
    af = system_pool.run(
        "condor_q", "-allusers", "-af", "ClusterId", "Owner", "JobStatus", user=bob
    )
    assert outcome(af) == recorded("other_user_q_allusers_af", job, alice=alice)
    rc, _, stderr = recorded("other_user_q", job)
    by_id = system_pool.run("condor_q", "-json", cluster, user=bob)
    assert (by_id.returncode, by_id.stderr) == (rc, stderr)
    [ad] = json.loads(by_id.stdout)
    assert (ad["Owner"], ad["ClusterId"], ad["Cmd"]) == (alice, int(cluster), "/bin/sleep")
    mine = system_pool.run("condor_q", user=alice)
    assert mine.returncode == 0 and f"Total for {alice}: 1 jobs;" in mine.stdout


def test_root_is_the_queue_super_user(system_pool, alice_job):
    alice, _bob, job = alice_job
    held = system_pool.run("condor_hold", job)
    assert outcome(held) == (0, f"Job {job} held\n", "")
    ad = system_pool.wait_for(job, lambda a: a["JobStatus"] == 5)
    assert ad["HoldReason"] == case("q_held_by_root")["stdout"].rsplit(" ", 1)[0]
    assert ad["HoldReason"] == "via condor_hold (by user condor)"  # root acts as condor
    removed = system_pool.run("condor_rm", alice)
    assert outcome(removed) == (0, f'All jobs of user "{alice}" have been marked for removal\n', "")


def test_a_forged_owner_is_refused_at_submit(system_pool, unix_users):
    alice, bob = unix_users("a"), unix_users("b")
    system_pool.write(alice, "forged.sub", f'{SLEEP.replace("queue", "")}+Owner = "{bob}"\nqueue\n')
    result = system_pool.run("condor_submit", "forged.sub", user=alice)
    assert outcome(result) == recorded("submit_owner_forged", "1.0", alice=alice, nobody=bob)
    assert system_pool.run("condor_q", "-allusers", "-af", "Owner").stdout == ""


@pytest.mark.localpool_only("reads localpool's queue file")
def test_the_owner_cannot_be_forged(system_pool, unix_users):
    alice, bob = unix_users("a"), unix_users("b")
    job = system_pool.submit(
        f"{SLEEP.replace('queue', '')}request_cpus = 64\n"
        f'MY.User = "{bob}@x"\n+LocalpoolStarterPid = 1\nqueue\n',
        user=alice,
    )
    ad = system_pool.ad(job)
    host = system_pool.ad(job)["User"].split("@")[1]
    assert (ad["Owner"], ad["User"]) == (alice, f"{alice}@{host}")
    queue = json.loads((system_pool.root / "queue.json").read_text())
    assert "LocalpoolStarterPid" not in queue["jobs"][job]
    # bob cannot act on it either
    assert system_pool.run("condor_rm", job, user=bob).returncode == 1


@pytest.mark.localpool_only("reads localpool's state files")
def test_the_pools_state_is_root_only(system_pool, unix_users):
    alice = unix_users("a")
    system_pool.submit(SLEEP, user=alice)
    done = system_pool.submit("executable = /bin/true\nqueue\n", user=alice)
    system_pool.wait_for(done, lambda a: a["JobStatus"] == 4)  # and in the history
    for name in ("queue.json", "history.jsonl", "pool.json", "queue.lock"):
        result = subprocess.run(
            ["sudo", "-n", "-u", alice, "cat", str(system_pool.root / name)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode != 0 and "Permission denied" in result.stderr, name
    listing = subprocess.run(
        ["sudo", "-n", "-u", alice, "ls", str(system_pool.root / "jobs")],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert listing.returncode != 0


def test_an_installed_tool_needs_no_environment(system_pool, unix_users):
    alice = unix_users("a")
    result = subprocess.run(
        ["sudo", "-n", "-u", alice, "env", "-i", str(system_pool.bin / "condor_q")],
        cwd=system_pool.home(alice),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"Total for {alice}: 0 jobs;" in result.stdout


@pytest.mark.localpool_only("reads the job's pid from localpool's job directory")
def test_the_job_runs_as_its_owner(system_pool, alice_job):
    alice, _bob, job = alice_job
    pid_file = system_pool.root / "jobs" / job / "job.pid"
    wait_until(pid_file.exists, 10, "the job's pid file")
    pid = int(pid_file.read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) == pwd.getpwnam(alice).pw_uid
    ps = subprocess.run(
        ["ps", "-o", "user=", "-p", str(pid)], capture_output=True, text=True, check=True
    )
    assert ps.stdout.strip() == alice


@pytest.mark.parametrize("system_pool", ["isolated", "shared"], indirect=True)
def test_ssh_to_job_as_the_owner(system_pool, alice_job):
    alice, _bob, job = alice_job
    result = system_pool.run("condor_ssh_to_job", "-auto-retry", job, "id -un", user=alice)
    assert (result.returncode, result.stdout) == (0, f"{alice}\n"), result.stderr
    # while the schedd says "retry" (the real one does for seconds), -auto-retry says so
    assert result.stderr in ("", "Waiting for job to start...\n")
    if system_pool.backend == "localpool":
        status = system_pool.localpool("status").stdout
        assert f"network:        {system_pool.network}" in status
    # no session directory is left once ssh has ended
    assert not list(Path("/tmp").glob(f"{alice}.condor_ssh_to_job_*"))


@pytest.mark.localpool_only("the starter's window is localpool's knob (--ssh-ready-delay)")
@pytest.mark.parametrize(
    "system_pool",
    [{"network": "isolated", "start_options": ("--ssh-ready-delay", "120")}],
    indirect=True,
)
def test_another_user_is_refused_before_the_starter_has_reported_in(system_pool, unix_users):
    """HTCondor's schedd checks who asks before it asks the startd where the starter is
    (schedd.cpp, the GET_JOB_CONNECT_INFO handler): in the window after a job starts
    another user is told "not authorized", and only the owner "retry"."""
    alice, bob = unix_users("a"), unix_users("b")
    job = system_pool.submit(SLEEP, user=alice)
    system_pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    result = system_pool.run("condor_ssh_to_job", job, "true", user=bob)
    assert outcome(result) == recorded("other_user_ssh", job, bob=bob)
    own = system_pool.run("condor_ssh_to_job", job, "true", user=alice)
    assert (own.returncode, own.stderr) == (1, "(Use -auto-retry to keep trying periodically.)\n")


def test_ssh_to_a_held_job_says_it_is_held(system_pool, alice_job):
    alice, _bob, job = alice_job
    assert system_pool.run("condor_hold", job).returncode == 0
    system_pool.wait_for(job, lambda a: a["JobStatus"] == 5)
    result = system_pool.run("condor_ssh_to_job", job, "true", user=alice)
    assert outcome(result) == recorded("ssh_held", job)


def test_an_interactive_shell_in_the_chosen_os_as_the_user(system_pool, unix_users):
    """condorsub shell (condor_submit -interactive underneath) as an ordinary account:
    a terminal in the job, with the job's environment and the chosen OS."""
    alice = unix_users("a")
    home = system_pool.home(alice)
    site = system_pool.write(alice, "site.toml", site_for_tests(home / "work"))
    env = {
        "PATH": f"{system_pool.bin}:{Path(CONDORSUB).parent}:/usr/bin:/bin",
        "HOME": str(home),
        "CONDORSPAWNER_SITE": str(site),
        "TERM": "xterm",
    }
    text = drive_terminal(
        [
            "sudo",
            "-n",
            "-u",
            alice,
            "env",
            *(f"{k}={v}" for k, v in env.items()),
            CONDORSUB,
            "shell",
            "--os",
            "Debian12",
            "--cpus",
            "2",
        ],
        env={"PATH": "/usr/bin:/bin"},
        cwd=home,
        command=b"id -un; echo T=$OMP_NUM_THREADS; grep ContainerOS $_CONDOR_JOB_AD; "
        b"echo END-OF-$((1 + 1)); exit\n",
        until=b"END-OF-2",
        timeout=90,
    )
    assert f"{alice}\r\nT=2\r\n" in text, text  # as alice, with the job's 2 CPUs
    assert 'ContainerOS = "Debian12"' in text, text


UNIX_SERVER = """\
import os, socket
path = os.path.join(os.getcwd(), "job.sock")
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(5)
while True:
    conn, _ = server.accept()
    conn.sendall(b"in-job-unix " + os.environ["_CONDOR_SLOT"].encode())
    conn.close()
"""


def _read_through(port: int, timeout: float = 20.0) -> bytes:
    """The first bytes a connection to the local port gets (bounded)."""

    def read() -> bytes | None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                return conn.recv(100)
        except OSError:
            return None

    return wait_until(read, timeout, f"an answer through 127.0.0.1:{port}")


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_forward_to_a_unix_socket_in_the_job(system_pool, unix_users):
    alice = unix_users("a")
    system_pool.write(alice, "server.py", UNIX_SERVER)
    job = system_pool.submit(
        "executable = /usr/bin/python3\narguments = server.py\nqueue\n", user=alice
    )
    system_pool.wait_for(job, lambda a: a["JobStatus"] == 2)
    sock_path = system_pool.home(alice) / "job.sock"
    wait_until(sock_path.exists, 20, "the job's socket")
    port = free_port()
    tunnel = subprocess.Popen(
        system_pool.command(
            "condor_ssh_to_job",
            "-auto-retry",
            "-ssh",
            f"ssh -N -L 127.0.0.1:{port}:{sock_path} -oExitOnForwardFailure=yes",
            job,
            user=alice,
        ),
        cwd=system_pool.home(alice),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert _read_through(port, timeout=40) == b"in-job-unix slot1_1"
    finally:
        _kill_group(tunnel)


def _session_dirs(user: str) -> list[Path]:
    return list(Path("/tmp").glob(f"{user}.condor_ssh_to_job_*"))


def _client_pid(uid: int) -> int | None:
    """The condor_ssh_to_job process (not its -proxy helper) of this account."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.parent.stat().st_uid != uid:
                continue
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"/condor_ssh_to_job") for a in argv) and b"-proxy" not in argv:
            return int(cmdline.parent.name)
    return None


def test_killed_ssh_to_job_leaves_its_session_directory(system_pool, alice_job):
    alice, _bob, job = alice_job
    uid = pwd.getpwnam(alice).pw_uid
    port = free_port()
    tunnel = subprocess.Popen(
        system_pool.command(
            "condor_ssh_to_job",
            "-auto-retry",
            "-ssh",
            f"ssh -N -L 127.0.0.1:{port}:127.0.0.1:9",
            job,
            user=alice,
        ),
        cwd=system_pool.home(alice),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 40, f"the tunnel listens on 127.0.0.1:{port}")
        sessions = _session_dirs(alice)
        assert len(sessions) == 1 and (sessions[0] / "ssh_key").exists()
        pid = _client_pid(uid)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert _session_dirs(alice) == sessions  # as real HTCondor: nobody cleans up
    finally:
        _kill_group(tunnel)


SECRET = "root's secret\n"


@pytest.fixture
def root_secret(public_tmp):
    """A root-only file in a root-only directory."""
    vault = public_tmp / "vault"
    vault.mkdir(mode=0o700)
    secret = vault / "secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    return secret


def _link(system_pool, user: str, name: str, target: Path) -> None:
    link = system_pool.home(user) / name
    link.symlink_to(target)
    entry = pwd.getpwnam(user)
    os.chown(link, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _nothing_leaked(system_pool, user: str) -> None:
    for path in system_pool.home(user).rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert "secret" not in path.read_text(errors="replace"), path


def test_symlinked_submit_file_log_and_output_get_nothing(system_pool, unix_users, root_secret):
    alice = unix_users("a")
    _link(system_pool, alice, "link.sub", root_secret)
    refused = system_pool.run("condor_submit", "link.sub", user=alice)
    assert outcome(refused) == (
        1,
        "",
        "\nERROR: Failed to open command file (link.sub) (Permission denied)\n",
    )
    _link(system_pool, alice, "job.log", root_secret)
    _link(system_pool, alice, "job.out", root_secret)
    job = system_pool.submit(
        "executable = /bin/echo\narguments = overwritten\nlog = job.log\noutput = job.out\nqueue\n",
        user=alice,
    )
    # localpool's job ends; the real shadow, refused the files, holds it: either way
    system_pool.wait_for(job, lambda a: a["JobStatus"] in (4, 5))
    assert root_secret.read_text() == SECRET
    _nothing_leaked(system_pool, alice)


def test_symlinked_input_and_transferred_output_get_nothing(system_pool, unix_users, root_secret):
    alice = unix_users("a")
    _link(system_pool, alice, "in.txt", root_secret)
    _link(system_pool, alice, "result.txt", root_secret)
    job = system_pool.submit(
        """\
        executable = /bin/sh
        arguments = "-c 'cat in.txt; echo overwritten > result.txt'"
        transfer_executable = false
        should_transfer_files = YES
        transfer_input_files = in.txt
        output = out.txt
        queue
        """,
        user=alice,
    )
    # localpool's job ends; the real shadow, refused the files, holds it: either way
    system_pool.wait_for(job, lambda a: a["JobStatus"] in (4, 5))
    assert root_secret.read_text() == SECRET
    _nothing_leaked(system_pool, alice)


@pytest.mark.localpool_only("emulates HTCondor 9.1")
@pytest.mark.parametrize("system_pool", [{"network": "isolated", "emulate": "9.1"}], indirect=True)
def test_commands_unknown_to_the_emulated_version_warn(system_pool, unix_users):
    alice = unix_users("a")
    system_pool.write(alice, "w.sub", "executable = /bin/true\nwant_io_proxy = true\nqueue\n")
    result = system_pool.run("condor_submit", "w.sub", user=alice)
    rec = case("submit_want_io_proxy_9_1")
    cluster = result.stdout.split()[-1].rstrip(".")
    stdout = rec["stdout"].replace("cluster 9.", f"cluster {cluster}.")
    assert outcome(result) == (rec["rc"], stdout, rec["stderr"])
    assert system_pool.ad(f"{cluster}.0")["WantIOProxy"] is False
    assert "HTCondor 9.1" in system_pool.localpool("status").stdout


def test_commands_known_to_25_do_not_warn_but_typos_do(pool):
    (pool.submit_dir / "w.sub").write_text(
        "executable = /bin/true\nwant_io_proxy = true\nrequst_cpus = 2\nqueue\n"
    )
    result = pool.run("condor_submit", "-terse", "w.sub")
    assert result.returncode == 0
    assert result.stderr == (
        "WARNING: the line 'requst_cpus = 2' was unused by condor_submit. Is it a typo?\n"
    )
    assert pool.ad(result.stdout.split()[0])["WantIOProxy"] is True


# condor_qedit: messages as HTCondor's src/condor_tools/qedit.cpp prints them (no recording)
QEDIT_NOT_SET = "Transaction failed.  No attributes were set.\n"
QEDIT_QUEUE_NOT_SET = "Queue transaction failed.  No attributes were set.\n"


def test_qedit_by_the_owner_sets_the_values_condor_q_shows(system_pool, alice_job):
    alice, _bob, job = alice_job
    cluster = job.split(".")[0]
    by_id = system_pool.run("condor_qedit", job, "Note", '"text"', "Foo", "5", user=alice)
    assert outcome(by_id) == (
        0,
        'Set attribute "Foo" for 1 matching jobs.\nSet attribute "Note" for 1 matching jobs.\n',
        "",
    )
    by_cluster = system_pool.run("condor_qedit", cluster, "Flag=true", "jobprio", "7", user=alice)
    assert outcome(by_cluster) == (
        0,
        'Set attribute "Flag" for 1 matching jobs.\nSet attribute "jobprio" for 1 matching jobs.\n',
        "",
    )
    by_owner = system_pool.run("condor_qedit", alice, "Expr", "RequestCpus * 2", user=alice)
    assert outcome(by_owner) == (0, 'Set attribute "Expr" for 1 matching jobs.\n', "")
    ad = system_pool.ad(job, user=alice)  # condor_q -json as alice
    assert (ad["Foo"], ad["Note"], ad["Flag"], ad["JobPrio"]) == (5, "text", True, 7)
    assert ad["Expr"] == "/Expr(RequestCpus * 2)/"
    assert "jobprio" not in ad  # the existing attribute, not a second spelling
    assert ad["JobStatus"] == 2  # the running job runs on


def test_qedit_of_another_users_job_is_refused_and_changes_nothing(system_pool, alice_job):
    alice, bob, job = alice_job
    cluster = job.split(".")[0]
    by_id = system_pool.run("condor_qedit", job, "Foo", "5", user=bob)
    assert outcome(by_id) == (
        1,
        "",
        f'Failed to set attribute "Foo" for job {job}.\n{QEDIT_QUEUE_NOT_SET}',
    )
    by_cluster = system_pool.run("condor_qedit", cluster, "Foo", "5", user=bob)
    assert outcome(by_cluster) == (
        1,
        "",
        f'Failed to set attribute "Foo" by constraint: ( (ClusterId == {cluster} ) )\n'
        + QEDIT_QUEUE_NOT_SET,
    )
    by_owner = system_pool.run("condor_qedit", alice, "Foo", "5", user=bob)
    assert outcome(by_owner) == (
        1,
        "",
        f'Failed to set attribute "Foo" by constraint: ( (Owner=="{alice}") )\n'
        + QEDIT_QUEUE_NOT_SET,
    )
    # a constraint alone selects only bob's own jobs: none
    by_constraint = system_pool.run("condor_qedit", "-constraint", "true", "Foo", "5", user=bob)
    assert outcome(by_constraint) == (
        1,
        "",
        f'Failed to set attribute "Foo" by constraint: ( (true) )\n{QEDIT_QUEUE_NOT_SET}',
    )
    assert "Foo" not in system_pool.ad(job)
    # root, the queue super-user, may
    assert outcome(system_pool.run("condor_qedit", job, "Foo", "6")) == (
        0,
        'Set attribute "Foo" for 1 matching jobs.\n',
        "",
    )
    assert system_pool.ad(job)["Foo"] == 6


def test_qedit_of_protected_attributes_is_refused(system_pool, alice_job):
    alice, bob, job = alice_job
    attempts = [
        (["Owner", f'"{bob}"'], alice, [("immutable", "Owner")]),
        (["Foo", "5", "ClusterId", "99"], alice, [("immutable", "ClusterId")]),
        (["ProcId=3", "User", '"x@y"'], alice, [("immutable", "ProcId"), ("immutable", "User")]),
        (["owner", f'"{bob}"'], None, [("immutable", "owner")]),  # root neither
    ]
    if system_pool.backend == "localpool":  # its own bookkeeping, as the schedd's secure ones
        attempts.append((["LocalpoolStarterPid", "1"], alice, [("secure", "LocalpoolStarterPid")]))
    for args, user, refused in attempts:
        result = system_pool.run("condor_qedit", job, *args, user=user)
        expected = "".join(
            f'Update of {kind} attribute "{a}" is not allowed.\n' for kind, a in refused
        )
        assert outcome(result) == (1, "", expected + QEDIT_NOT_SET), args
    ad = system_pool.ad(job)
    assert (ad["Owner"], ad["ProcId"], "Foo" in ad) == (alice, 0, False)
    assert ad["User"].startswith(f"{alice}@") and f"{ad['ClusterId']}.0" == job
    if system_pool.backend == "localpool":
        queue = json.loads((system_pool.root / "queue.json").read_text())
        assert queue["jobs"][job]["LocalpoolStarterPid"] != 1


def test_qedit_of_a_value_that_is_no_classad_expression_is_refused(system_pool, alice_job):
    alice, _bob, job = alice_job
    for value in ["1 +", '"unterminated', "", "1; v = 2", "a\nb"]:
        result = system_pool.run("condor_qedit", job, "Foo", "5", "Bar", value, user=alice)
        assert outcome(result) == (
            1,
            "",
            f"Update aborted, illegal value for : Bar\n{QEDIT_NOT_SET}",
        ), value
    named = system_pool.run("condor_qedit", job, "Foo.Bar", "5", user=alice)
    assert outcome(named) == (
        1,
        "",
        'Update aborted, illegal attribute-name specified for attribute "Foo.Bar".\n'
        + QEDIT_NOT_SET,
    )
    ad = system_pool.ad(job)
    assert "Foo" not in ad and "Bar" not in ad
