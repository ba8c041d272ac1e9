"""The hub as a site runs it: root, acting for real Unix accounts through sudo, on a shared pool.

JupyterHub runs as root with ``run_as = ["sudo", "-n", "-u", "{user}"]``; every
user is a real account (``useradd``) with a home; localpool is installed under
a prefix and run by root, and its tools identify callers by their uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from condorspawner.jobad import MARKS, config_string
from tests.sessions import (
    NOBODY,
    cmdline,
    nonce,
    program,
    run_in_kernel,
    server_gone,
    squatter,
    start_kernel,
    submit_dir,
    time_to_answer,
    tunnel_pids,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real accounts and sudo need root")


SPY = r"""
import glob, json, re, socket, sys, threading, time
ad = open(sys.argv[1]).read()
ports = {int(v) for v in re.findall(r"= (\d{4,5})$", ad, re.M)}
heard, tried = [], {}
def listen(port):
    try:
        s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen()
    except OSError:
        return
    while True:
        c, _ = s.accept(); c.settimeout(2)
        try:
            heard.append(c.recv(65536).decode(errors="replace"))
        except OSError:
            pass
for p in ports:
    if 1024 < p < 65536:
        threading.Thread(target=listen, args=(p,), daemon=True).start()
deadline = time.time() + 25
def try_socket(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path); s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        tried[path] = "connected"
    except OSError as err:
        tried[path] = type(err).__name__
    finally:
        s.close()
while time.time() < deadline:
    for path in glob.glob("/tmp/condorspawner-*"):
        for name in ("nb.sock", "hub-0000000000000000.sock"):
            try_socket(path + "/" + name)
    # every socket the machine lists (the tunnels' hub-side ends among them)
    for line in open("/proc/net/unix").read().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and "condorspawner" in fields[7]:
            try_socket(fields[7])
    time.sleep(0.5)
print(json.dumps({"heard": heard, "tried": tried, "ports": sorted(ports)}))
"""


def owner_of(path: Path) -> str:
    return pwd.getpwuid(path.lstat().st_uid).pw_name


def server_process_users(pool) -> dict[str, set[str]]:
    """Who runs the launchers and notebook servers of this pool's jobs (ps): those working
    in the pool's directories, so another test run's jobs on the machine do not count."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "user:32=,pid=,args="], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        user, pid, args = line.split(None, 2)
        try:
            cwd = Path(f"/proc/{pid}/cwd").resolve(strict=True)
        except OSError:  # ended meanwhile
            continue
        if not cwd.is_relative_to(pool.base.resolve()):
            continue
        for name in ("condorspawner.launcher", "jupyterhub-singleuser"):
            if name in args:
                found.setdefault(name, set()).add(user)
    return found


def test_two_users_at_once_each_as_their_own_account(sudo_hub, system_pool, unix_users):
    alice, bob = unix_users("a"), unix_users("b")
    for user in (alice, bob):
        sudo_hub.request_spawn(user, {})
    for user in (alice, bob):
        sudo_hub.wait_ready(user)
        assert sudo_hub.api("GET", f"/user/{user}/api/status", through_proxy=True)[0] == 200
    jobs = {user: sudo_hub.job_of(user) for user in (alice, bob)}
    for user, job in jobs.items():
        assert system_pool.ad(job)["Owner"] == user
        home = Path(pwd.getpwnam(user).pw_dir)
        submit_dir = home / ".condorspawner" / "default"
        assert owner_of(submit_dir) == user and oct(submit_dir.stat().st_mode & 0o777) == "0o700"
        for name in ("job.sub", "wrapper.sh", "condorspawner.secret", "notebook.log"):
            assert owner_of(submit_dir / name) == user, name
        secret = submit_dir / "condorspawner.secret"
        assert oct(secret.stat().st_mode & 0o777) == "0o600"
        assert owner_of(home / "jupyter") == user
    # the launcher and the notebook servers run as their users, and only as them
    users = server_process_users(system_pool)
    assert users["condorspawner.launcher"] == {alice, bob}, users
    assert users["jupyterhub-singleuser"] == {alice, bob}, users
    # alice can touch nothing of bob's: not his job, not his files
    bob_job = jobs[bob]
    for tool, verb in (("condor_rm", "remove"), ("condor_hold", "hold")):
        result = system_pool.run(tool, bob_job, user=alice)
        assert result.returncode == 1
        assert f"Permission denied to {verb} job {bob_job}" in result.stderr
    ssh = system_pool.run("condor_ssh_to_job", bob_job, "true", user=alice)
    assert ssh.returncode == 1 and "is not authorized" in ssh.stderr
    bob_submit = Path(pwd.getpwnam(bob).pw_dir) / ".condorspawner" / "default"
    peek = subprocess.run(
        ["sudo", "-n", "-u", alice, "cat", str(bob_submit / "condorspawner.secret")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert peek.returncode != 0 and not peek.stdout
    assert system_pool.ad(bob_job)["JobStatus"] == 2
    # the hub's process table shows no job's directory: the forwards are in a 0600 file
    for user in (alice, bob):
        for pid in tunnel_pids([nonce(user)]):
            assert not re.search(r"/tmp/condorspawner-[0-9a-f]{32}", cmdline(pid)), cmdline(pid)
        config = Path(pwd.getpwnam(user).pw_dir) / ".condorspawner/default/tunnel.ssh_config"
        assert owner_of(config) == user and oct(config.stat().st_mode & 0o777) == "0o600"


def test_batch_jobs_from_each_notebook_belong_to_its_user(sudo_hub, system_pool, unix_users):
    user = unix_users("c")
    sudo_hub.spawn(user, {})
    kernel = start_kernel(sudo_hub, user)
    out = asyncio.run(
        run_in_kernel(
            sudo_hub,
            user,
            kernel,
            textwrap.dedent("""
            import subprocess
            r = subprocess.run(["condorsub", "submit", "--name", "mine", "/bin/sleep", "300"],
                               capture_output=True, text=True)
            print("rc", r.returncode, "ids", r.stdout.split(), "err", r.stderr.strip())
            """),
        )
    )
    assert "rc 0" in out, out
    batch = out.split("ids ['")[1].split("'")[0]
    assert system_pool.ad(batch)["Owner"] == user


def test_root_and_system_accounts_get_no_job(sudo_hub, system_pool):
    """Refused before the spawn is accepted (issue 22.5): 400 naming the rule, one warning
    line, no traceback, nothing written, nothing submitted."""
    before = Path("/root/.condorspawner").exists()
    for name in ("root", "daemon"):
        sudo_hub.api("POST", f"/users/{name}")
        status, body = sudo_hub.api("POST", f"/users/{name}/server", {"user_options": {}})
        assert status == 400, (status, body)
        assert f"the account {name!r} may not run notebook servers" in body["message"]
        assert server_gone(sudo_hub, name)
    log = sudo_hub.log_tail(200)
    for name in ("root", "daemon"):
        lines = [line for line in log.splitlines() if f"the account {name!r} may not" in line]
        assert len(lines) == 1 and "[W " in lines[0], lines
    assert "Traceback" not in log and "[E " not in log, log
    assert Path("/root/.condorspawner").exists() == before
    assert system_pool.run("condor_q", "-allusers", "-json").stdout == ""


HOSTILE_NAMES = ["../x", "a\nb", "a\x00b", "-n", "a b", "röot", "x;id", "%2e%2e"]


def test_hostile_names_get_no_job_and_run_nothing(sudo_hub, system_pool):
    """Issue 22 (actor d): a login name that is no account's (a path, a control or NUL
    character, an option, a shell word, non-ASCII) is refused before the spawn is
    accepted: by JupyterHub (404: it made no such user), or with our 400 naming it and
    no error logged; no tool runs for it, no job."""
    from urllib.parse import quote

    for name in HOSTILE_NAMES:
        url = quote(name, safe="")
        created, _ = sudo_hub.api("POST", f"/users/{url}")
        status, body = sudo_hub.api("POST", f"/users/{url}/server", {"user_options": {}})
        if created == 201:
            assert status == 400 and f"no account {name!r}" in body["message"], (name, body)
        else:
            assert status == 404, (name, created, status, body)
    calls = sudo_hub.calls.read_text().split()
    assert "condor_submit" not in calls and "condor_ssh_to_job" not in calls, calls
    assert "Exception applying user_options" not in sudo_hub.log_tail(400)
    assert system_pool.run("condor_q", "-allusers", "-json").stdout == ""


def test_a_users_symlinks_make_root_touch_nothing_of_theirs(sudo_hub, system_pool, unix_users):
    """~/jupyter -> a root-only directory and ~/.condorspawner -> another: root writes,
    chowns and reads nothing there; the spawn fails with the user's own permission error."""
    user = unix_users("d")
    home = Path(pwd.getpwnam(user).pw_dir)
    precious = system_pool.base / "precious"
    precious.mkdir(mode=0o700)
    (precious / "keep").write_text("root's")
    secret_dir = system_pool.base / "rootonly"
    secret_dir.mkdir(mode=0o700)
    for link, target in ((home / "jupyter", precious), (home / ".condorspawner", secret_dir)):
        os.symlink(target, link)
        os.lchown(link, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    sudo_hub.request_spawn(user, {})
    wait_until(lambda: server_gone(sudo_hub, user), 30, "the spawn failed")
    assert owner_of(precious) == "root" and oct(precious.stat().st_mode & 0o777) == "0o700"
    assert [p.name for p in precious.iterdir()] == ["keep"]
    assert list(secret_dir.iterdir()) == []
    assert "Cannot write the job's files in your directories" in sudo_hub.log_tail(100)
    assert system_pool.run("condor_q", "-allusers", "-json").stdout == ""


@pytest.mark.parametrize("system_pool", ["shared"], indirect=True)
def test_another_users_job_on_the_same_loopback_gets_nothing(sudo_hub, system_pool, unix_users):
    """bob's job shares 127.0.0.1 with alice's notebook: it squats every port alice's job
    ad names, tries every rendezvous socket, and records what reaches it."""
    alice, bob = unix_users("e"), unix_users("f")
    sudo_hub.spawn(alice, {})
    alice_job = sudo_hub.job_of(alice)
    system_pool.write(
        bob, "alice.ad", system_pool.run("condor_q", "-l", alice_job, user=bob).stdout
    )
    spy = system_pool.write(bob, "spy.py", SPY)
    spy_job = system_pool.submit(
        f"""
        executable = {os.path.realpath(sys.executable)}
        arguments = {spy.name} alice.ad
        transfer_input_files = {spy.name}, alice.ad
        should_transfer_files = YES
        transfer_executable = false
        output = spy.out
        error = spy.err
        queue
        """,
        user=bob,
    )
    system_pool.wait_for(spy_job, lambda a: a["JobStatus"] == 2)
    # alice works through the hub: her token and cookies travel to her server
    for _ in range(5):
        assert sudo_hub.api("GET", f"/user/{alice}/api/status", through_proxy=True)[0] == 200
        assert sudo_hub.api("GET", f"/user/{alice}/api/contents", through_proxy=True)[0] == 200
    system_pool.wait_for(spy_job, lambda a: a["JobStatus"] == 4, timeout=60)
    report = json.loads((Path(pwd.getpwnam(bob).pw_dir) / "spy.out").read_text())
    assert report["heard"] == [], report
    assert "connected" not in report["tried"].values(), report
    assert any("/fwd-" in path for path in report["tried"]), report  # the hub-side ends
    alice_dirs = [p for p in Path("/tmp").glob("condorspawner-*") if owner_of(p) == alice]
    assert alice_dirs, "alice's notebook has no rendezvous directory"
    for directory in alice_dirs:
        assert report["tried"][f"{directory}/nb.sock"] == "PermissionError", report
    token = json.loads(
        (
            Path(pwd.getpwnam(alice).pw_dir) / ".condorspawner/default/condorspawner.secret"
        ).read_text()
    )["env"]["JUPYTERHUB_API_TOKEN"]
    assert token not in json.dumps(report)
    time_to_answer(sudo_hub, alice)


LOCAL_ATTACKER = r"""
import glob, json, os, socket, sys, time
port, until = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
stop = sys.argv[3] if len(sys.argv) > 3 else None  # a file whose coming ends the attack
got = {"read": {}, "sockets": {}, "bound": [], "replay": {}, "tried": 0}
def attempt(what):
    got["tried"] += 1
    try:
        return what()
    except OSError as err:
        return type(err).__name__
def read(path):
    with open(path, "rb") as f:
        return f.read(1 << 20).decode("latin-1")
def bind(family, address):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        s.bind(address); s.listen()
        return "bound"
    finally:
        s.close()
def ask(path):
    s = socket.socket(socket.AF_UNIX); s.settimeout(1)
    try:
        s.connect(path); s.sendall(b"GET /api/status HTTP/1.0\r\n\r\n")
        return s.recv(4096).decode("latin-1")
    finally:
        s.close()
while time.monotonic() < until and not (stop and os.path.exists(stop)):
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        for name in ("cmdline", "environ"):
            text = attempt(lambda: read(f"/proc/{pid}/{name}"))
            if text and "Error" not in text:
                got["read"][f"/proc/{pid}/{name} ({read(f'/proc/{pid}/comm').strip()})"] = text
    for top in ("/tmp", "/run/condorspawner", "/dev/shm"):
        for folder, _, names in os.walk(top):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    text = attempt(lambda: read(path))
                    if "Error" not in text:
                        got["read"][path] = text
    for folder in glob.glob("/tmp/*.condor_ssh_to_job_*"):  # its key, its ssh_config
        got["replay"][folder] = attempt(lambda: sorted(os.listdir(folder)))
    for line in read("/proc/net/unix").splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[7].startswith("/"):
            got["sockets"][fields[7]] = attempt(lambda: ask(fields[7]))
    for family, address in (
        (socket.AF_INET, ("127.0.0.1", port)),
        (socket.AF_INET6, ("::", port)),
        (socket.AF_INET6, ("::ffff:127.0.0.1", port)),
    ):
        if attempt(lambda: bind(family, address)) == "bound":
            got["bound"].append([str(address), time.monotonic()])  # the machine's clock
    time.sleep(0.2)
print(json.dumps(got))
"""


def _of_the_session(where: str, user: str, hub_root: Path) -> bool:
    """Whether a place the attacker read is the session's (a process, the user's file, the
    hub's, an ssh session directory), not a public file that holds a key of its own (a
    package's test key in a checkout under /tmp)."""
    if where.startswith("/proc/") or ".condor_ssh_to_job_" in where:
        return True
    path = Path(where)
    try:
        owner = path.stat().st_uid
    except OSError:  # gone meanwhile: count it
        return True
    return owner == pwd.getpwnam(user).pw_uid or path.is_relative_to(hub_root)


def test_another_local_account_gets_no_secret_and_no_request(sudo_hub, unix_users):
    """Issue 22 (actor c): while alice works through the hub and her tunnel is killed
    once, another account on the hub reads every process's command line and environment
    and every file it can under /tmp, /run/condorspawner and /dev/shm, asks every Unix
    socket the machine lists, and tries to bind alice's port: it gets none of alice's
    secrets (API token, rendezvous nonce) and none of her requests."""
    alice = unix_users("l")
    secrets, port = _session_secrets(sudo_hub, alice)
    attacker = _local_attacker(port, 12)
    for pid in tunnel_pids([secrets["rendezvous nonce"]]):
        if program(pid) == "ssh":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _works(sudo_hub, alice)
    _got_nothing(attacker, secrets, alice, sudo_hub)
    time_to_answer(sudo_hub, alice, timeout=60)


@pytest.mark.slow
def test_another_local_account_gets_nothing_across_a_hub_restart(sudo_hub, unix_users):
    """Issue 22 (actor c), the full catalogue: the attacker of the default run goes on
    through a killed tunnel and a hub restart, and a second account takes alice's port
    L the moment the hub has stopped and holds it: neither gets a secret, no request of
    alice's reaches either, L is never bound while a hub runs, and the restarted hub
    moves alice's route to a port of its own."""
    alice = unix_users("r")
    secrets, port = _session_secrets(sudo_hub, alice)
    over = Path(f"/tmp/condorspawner-attack-over-{os.getpid()}-{alice}")  # ends the attack
    attacker = _local_attacker(port, 300, over)
    holder = None
    try:
        for pid in tunnel_pids([secrets["rendezvous nonce"]]):
            if program(pid) == "ssh":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _works(sudo_hub, alice)
        down = time.monotonic()
        sudo_hub.stop()  # no hub, no proxy: nothing routes alice's requests meanwhile
        holder = squatter(port, 300)
        took = holder.stdout.readline()  # at once: the stopped hub holds L no more
        assert took.startswith("bound"), took
        sudo_hub.start()
        time_to_answer(sudo_hub, alice, timeout=90)
        up = time.monotonic()
        _works(sudo_hub, alice, answered=True)
        over.touch()
        _got_nothing(attacker, secrets, alice, sudo_hub, downtime=(down, up))
    finally:
        over.unlink(missing_ok=True)
        attacker.kill()
        if holder is not None:
            holder.kill()
    reached, _ = holder.communicate(timeout=30)
    assert "connection" not in reached, reached  # none of alice's requests
    _, model = sudo_hub.api("GET", f"/users/{alice}")
    assert model["servers"][""]["state"]["local_port"] != port  # the route moved


def _session_secrets(hub, user: str) -> tuple[dict[str, str], int]:
    """(the secrets of the user's new session, its local port L)."""
    hub.spawn(user, {})
    secret = json.loads((submit_dir(user) / "condorspawner.secret").read_text())
    secrets = {
        "API token": secret["env"]["JUPYTERHUB_API_TOKEN"],
        "rendezvous nonce": secret["rendezvous"]["nonce"],
    }
    _, model = hub.api("GET", f"/users/{user}")
    return secrets, model["servers"][""]["state"]["local_port"]


def _local_attacker(port: int, seconds: float, over: Path | None = None) -> subprocess.Popen:
    """LOCAL_ATTACKER as another account, for ``seconds`` or until ``over`` exists."""
    command = [*NOBODY, sys.executable, "-c", LOCAL_ATTACKER, str(port), str(seconds)]
    command += [str(over)] if over else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd="/")


def _works(hub, user: str, answered: bool = False) -> None:
    """The user works on: their token and cookies travel to their server (``answered``:
    and it answers every request)."""
    for _ in range(20):
        status, listing = hub.api("GET", f"/user/{user}/api/contents", through_proxy=True)
        assert not answered or (status == 200 and isinstance(listing, dict)), (status, listing)
        time.sleep(0.3)


def _got_nothing(
    attacker: subprocess.Popen,
    secrets: dict[str, str],
    user: str,
    hub,
    downtime: tuple[float, float] | None = None,
) -> None:
    """What the local attacker got once it is done: none of the session's secrets, no
    answer from the session's sockets, and the session's port never while a hub ran
    (only within ``downtime``, the monotonic times between a hub's stop and its
    successor's re-attach)."""
    out, _ = attacker.communicate(timeout=120)
    report = json.loads(out)
    print(
        f"\nattacks tried: {report['tried']}, sockets asked: {len(report['sockets'])}, "
        f"ssh session directories tried: {len(report['replay'])}"
    )
    found = {
        name: [where for where, text in report["read"].items() if value in text]
        for name, value in secrets.items()
        if value in out
    }
    assert found == {}, f"the attacker found {found}"
    keys = [
        where
        for where, text in report["read"].items()
        if "PRIVATE KEY" in text and _of_the_session(where, user, hub.root)
    ]
    assert keys == [], f"the attacker read private keys in {keys}"
    replayed = {d: r for d, r in report["replay"].items() if r != "PermissionError"}
    assert replayed == {}, f"the attacker opened ssh session directories: {replayed}"
    start, end = downtime or (0.0, -1.0)
    assert all(start <= when <= end for _, when in report["bound"]), (downtime, report["bound"])
    assert any("/fwd-" in path for path in report["sockets"]), report["sockets"]  # it tried
    answered = {p: r for p, r in report["sockets"].items() if r.startswith("HTTP/")}
    assert not [p for p in answered if "condorspawner" in p], answered


def test_a_job_forged_with_another_users_marks_is_never_taken_for_theirs(
    sudo_hub, system_pool, unix_users
):
    """Issue 22 (actors a, d): bob may not edit alice's job (condor_qedit is refused)
    and gives his own job every mark of alice's session (the hub's id, her name, her
    server, her spawn): her restarted hub re-attaches her own job, her next spawn gets
    a new job of hers, and bob's job is neither taken, ended nor reached."""
    alice, bob = unix_users("g"), unix_users("h")
    sudo_hub.spawn(alice, {})
    job = sudo_hub.job_of(alice)
    ad = system_pool.ad(job)
    marks = {attr: ad[attr] for attr in MARKS.values() if isinstance(ad.get(attr), str)}
    assert set(marks) == set(MARKS.values()), marks
    tried = (*marks, "NotebookPort", "Owner", "Iwd")
    for attr in tried:
        edited = system_pool.run("condor_qedit", job, attr, '"bob"', user=bob)
        assert edited.returncode != 0, (attr, edited.stdout)
    after = system_pool.ad(job)
    assert {attr: after.get(attr) for attr in tried} == {attr: ad.get(attr) for attr in tried}
    forged = system_pool.submit(
        "executable = /bin/sleep\narguments = 600\n"
        + "".join(f"MY.{attr} = {config_string(value)}\n" for attr, value in marks.items())
        + "queue\n",
        user=bob,
    )
    system_pool.wait_for(forged, lambda a: a["JobStatus"] == 2)

    sudo_hub.stop()
    sudo_hub.start()
    time_to_answer(sudo_hub, alice, timeout=60)
    _, model = sudo_hub.api("GET", f"/users/{alice}")
    assert model["servers"][""]["state"]["job_id"] == job
    assert sudo_hub.api("GET", f"/user/{alice}/api/contents", through_proxy=True)[0] == 200

    sudo_hub.api("DELETE", f"/users/{alice}/server")
    wait_until(lambda: server_gone(sudo_hub, alice), 90, "alice's server stopped")
    sudo_hub.spawn(alice, {})
    _, model = sudo_hub.api("GET", f"/users/{alice}")
    again = model["servers"][""]["state"]["job_id"]
    assert again not in (job, forged) and system_pool.ad(again)["Owner"] == alice
    assert system_pool.ad(forged)["JobStatus"] == 2, "bob's job was touched"
    assert "Traceback" not in sudo_hub.log_tail(300)
