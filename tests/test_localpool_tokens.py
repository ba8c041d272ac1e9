"""localpool's IDTOKENS: condor_token_fetch / condor_token_list, and tools inside isolated jobs.

Formats and messages from HTCondor's source and manual (token_fetch.cpp,
token_list.cpp, token_utils.cpp; tests/data/htcondor/README.md).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
import socket
import stat
import subprocess
import time

import pytest

from localpool.schedd.scheduler import namespaces_available

ME = getpass.getuser()
HOST = socket.gethostname().split(".")[0] or "localhost"
AUTH_FAILED = "AUTHENTICATE:1003:Failed to authenticate with any method"
ISOLATED = pytest.mark.skipif(
    os.geteuid() != 0 or not namespaces_available(), reason="isolated jobs need root and unshare"
)


def run_env(pool, *cmd: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(cmd),
        cwd=pool.submit_dir,
        env={**pool.env, **env},
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )


def part(token: str, index: int) -> dict:
    text = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def test_token_fetch_prints_a_pool_signed_jwt(pool):
    before = int(time.time())
    result = pool.run("condor_token_fetch", "-lifetime", "600", "-authz", "READ", "-authz", "WRITE")
    assert result.returncode == 0 and result.stderr == ""
    token = result.stdout.rstrip("\n")
    assert result.stdout == token + "\n" and token.count(".") == 2
    assert part(token, 0) == {"alg": "HS256", "kid": "POOL"}
    claims = part(token, 1)
    assert claims["sub"] == f"{ME}@{HOST}" and claims["iss"] == HOST
    assert claims["scope"] == "condor:/READ condor:/WRITE"
    assert claims["exp"] - claims["iat"] == 600 and claims["iat"] >= before
    assert len(claims["jti"]) == 32
    key = pool.root / "passwords.d" / "POOL"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    head, body, mac = token.split(".")
    want = hmac.new(key.read_bytes(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(want).rstrip(b"=").decode() == mac
    plain = part(pool.run("condor_token_fetch").stdout.strip(), 1)
    assert "exp" not in plain and "scope" not in plain  # no restriction unless asked


def test_token_fetch_to_a_file_and_token_list(pool, tmp_path):
    folder = tmp_path / "tokens.d"
    env = {"_CONDOR_SEC_TOKEN_DIRECTORY": str(folder)}
    first = run_env(pool, "condor_token_fetch", "-authz", "READ", "-token", "mine", **env)
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    run_env(pool, "condor_token_fetch", "-lifetime", "60", "-token", "mine", **env)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "mine").stat().st_mode) == 0o600
    tokens = (folder / "mine").read_text().splitlines()
    assert len(tokens) == 2  # appended, one per line
    (folder / ".hidden").write_text(tokens[0] + "\n")  # skipped, as HTCondor skips it
    (folder / "notes").write_text("# a comment\nnot-a-jwt\n")
    listed = run_env(pool, "condor_token_list", **env)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    for line, token in zip(lines, tokens, strict=True):
        claims = part(token, 1)
        payload = json.dumps(claims, sort_keys=True, separators=(",", ":")).replace("/", "\\/")
        assert line == (
            f'Header: {{"alg":"HS256","kid":"POOL"}} Payload: {payload} File: {folder / "mine"}'
        )
    assert '"scope":"condor:\\/READ"' in lines[0]
    bad = pool.run("condor_token_fetch", "-bogus")
    assert bad.returncode == 1
    assert bad.stderr.startswith("condor_token_fetch: Invalid command line argument: -bogus\n")
    assert "Usage: condor_token_fetch [-type TYPE] [-name NAME]" in bad.stderr
    assert pool.run("condor_token_fetch", "-lifetime", "soon").stderr == (
        "condor_token_fetch: Invalid argument for -lifetime: soon.\n"
    )


JOB_SCRIPT = """\
#!/bin/sh
for d in none read readwrite expired forged other; do
  echo "== $d"
  export _CONDOR_SEC_TOKEN_DIRECTORY={dirs}/$d
  "$_CONDOR_BIN/condor_q" -af ClusterId 2>&1; echo "rc=$?"
  "$_CONDOR_BIN/condor_submit" -terse {dirs}/true.sub 2>&1; echo "rc=$?"
done
"""


def token_dirs(pool, base) -> None:
    """Token directories: none, READ, READ+WRITE, expired, forged, another pool's key."""

    def fetch(*args: str) -> str:
        result = pool.run("condor_token_fetch", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    good = fetch("-authz", "READ", "-authz", "WRITE")
    head, body, mac = good.strip().split(".")
    claims = part(good, 1)
    claims["sub"] = f"root@{HOST}"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    other = hmac.new(b"x" * 32, f"{head}.{body}".encode(), hashlib.sha256).digest()
    tokens = {
        "read": fetch("-authz", "READ"),
        "readwrite": good,
        "expired": fetch("-lifetime", "0"),
        "forged": f"{head}.{forged_body}.{mac}\n",
        "other": f"{head}.{body}.{base64.urlsafe_b64encode(other).rstrip(b'=').decode()}\n",
    }
    (base / "none").mkdir()
    for name, token in tokens.items():
        (base / name).mkdir()
        (base / name / "token").write_text(token)
    (base / "true.sub").write_text("executable = /bin/true\nqueue\n")


def sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines(keepends=True):
        if line.startswith("== "):
            name = line[3:].strip()
            out[name] = ""
        elif name:
            out[name] += line
    return out


@ISOLATED
def test_a_tool_in_an_isolated_job_needs_a_valid_token(pool, tmp_path):
    base = tmp_path / "tok"
    base.mkdir()
    token_dirs(pool, base)
    script = pool.submit_dir / "inside.sh"
    script.write_text(JOB_SCRIPT.format(dirs=base))
    script.chmod(0o755)
    job = pool.submit("executable = inside.sh\noutput = inside.out\nqueue\n")
    pool.wait_for(job, lambda a: a["JobStatus"] == 4, timeout=60)
    got = sections((pool.submit_dir / "inside.out").read_text())
    addr = f"<127.0.0.1:9618?addrs=127.0.0.1-9618&alias={HOST}&noUDP&sock=schedd_localpool>"
    refused_q = f"\n-- Failed to fetch ads from: {addr} : {HOST}\n{AUTH_FAILED}\nrc=1\n"
    refused_submit = f"\nERROR: Failed to connect to local queue manager\n{AUTH_FAILED}\nrc=1\n"
    for name in ("none", "expired", "forged", "other"):
        assert got[name] == refused_q + refused_submit, name
    denied = (
        "\nERROR: Failed to connect to local queue manager\n"
        f'SECMAN:2010:Received "DENIED" from server for user {ME}@{HOST} using method IDTOKENS.\n'
        "rc=1\n"
    )
    assert got["read"] == f"{job.split('.')[0]}\nrc=0\n" + denied
    lines = got["readwrite"].splitlines()
    assert lines[:2] == [job.split(".")[0], "rc=0"] and lines[3] == "rc=0"
    submitted = lines[2].split()[0]
    assert pool.ad(submitted)["Owner"] == ME  # the token's identity submitted it


LYING_CLIENT = """\
import sys
path = sys.argv[1]
source = open(path).read()
assert "from localpool.clients.client import main" in source
source = source.replace(
    "from localpool.clients.client import main",
    "import localpool.clients.client as c\\nc._netns = lambda: {host_ns!r}\\nmain = c.main",
)
sys.argv = sys.argv[1:]
exec(compile(source, path, "exec"))
"""


@ISOLATED
def test_an_isolated_job_cannot_claim_the_pools_network(pool, tmp_path):
    """The pool looks up the caller's namespace itself (SO_PEERCRED pid), not its word."""
    from localpool.install import interpreter

    host_ns = os.readlink("/proc/self/ns/net")
    lie = tmp_path / "lie.py"
    lie.write_text(LYING_CLIENT.format(host_ns=host_ns))
    lie.chmod(0o644)
    script = pool.submit_dir / "lie.sh"
    script.write_text(
        "#!/bin/sh\nexport _CONDOR_SEC_TOKEN_DIRECTORY=/nonexistent\n"
        f'{interpreter()} -I {lie} "$_CONDOR_BIN/condor_q" -af ClusterId 2>&1; echo "rc=$?"\n'
    )
    script.chmod(0o755)
    job = pool.submit("executable = lie.sh\noutput = lie.out\nqueue\n")
    pool.wait_for(job, lambda a: a["JobStatus"] == 4, timeout=60)
    addr = f"<127.0.0.1:9618?addrs=127.0.0.1-9618&alias={HOST}&noUDP&sock=schedd_localpool>"
    assert (pool.submit_dir / "lie.out").read_text() == (
        f"\n-- Failed to fetch ads from: {addr} : {HOST}\n{AUTH_FAILED}\nrc=1\n"
    )


def test_on_the_access_point_no_token_is_needed(pool):
    """Outside a job (and in a job sharing the host's network) the file system identifies."""
    assert pool.run("condor_q").returncode == 0
    pool.restart("--network", "shared")
    script = pool.submit_dir / "shared.sh"
    script.write_text(
        "#!/bin/sh\nexport _CONDOR_SEC_TOKEN_DIRECTORY=/nonexistent\n"
        '"$_CONDOR_BIN/condor_q" -af ClusterId\n'
    )
    script.chmod(0o755)
    job = pool.submit("executable = shared.sh\noutput = shared.out\nerror = shared.err\nqueue\n")
    pool.wait_for(job, lambda a: a["JobStatus"] == 4, timeout=60)
    assert (pool.submit_dir / "shared.out").read_text() == f"{job.split('.')[0]}\n"


@ISOLATED
def test_the_default_token_directory_of_a_real_account(system_pool, unix_users):
    alice = unix_users("a")
    fetched = system_pool.run(
        "condor_token_fetch", "-authz", "READ", "-lifetime", "300", "-token", "job", user=alice
    )
    assert fetched.returncode == 0, fetched.stderr
    home = system_pool.home(alice)
    folder = home / ".condor" / "tokens.d"
    assert (folder / "job").stat().st_uid == (home.stat().st_uid)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    listed = system_pool.run("condor_token_list", user=alice)
    assert listed.stdout.startswith('Header: {"alg":"HS256","kid":"POOL"} Payload: {')
    assert listed.stdout.endswith(f" File: {folder / 'job'}\n")
    assert f'"sub":"{alice}@{HOST}"' in listed.stdout
    system_pool.write(alice, "in.sh", '#!/bin/sh\n"$_CONDOR_BIN/condor_q" -af Owner\n')
    (home / "in.sh").chmod(0o755)
    system_pool.write(
        alice, "in.sub", "executable = in.sh\noutput = in.out\nerror = in.err\nqueue\n"
    )
    job = system_pool.run("condor_submit", "-terse", "in.sub", user=alice).stdout.split()[0]
    system_pool.wait_for(job, lambda a: a["JobStatus"] == 4, timeout=60)
    assert (home / "in.out").read_text() == f"{alice}\n"
    # root's listing is root's own directory: alice's token is not in it
    assert f"{alice}@" not in system_pool.run("condor_token_list").stdout


# --- condor_ssh_to_job from an isolated job: the schedd's check, then the session ---------

CANT_CONNECT = "Can't connect to schedd\n"  # ssh_to_job.cpp: its read-only queue connection failed
NO_CONNECT_INFO = "Failed to send GET_JOB_CONNECT_INFO to schedd\n"  # dc_schedd.cpp: WRITE denied
SSH_SCRIPT = """\
#!/bin/sh
for d in none read readwrite expired forged; do
  echo "== $d"
  export _CONDOR_SEC_TOKEN_DIRECTORY={dirs}/$d
  "$_CONDOR_BIN/condor_ssh_to_job" {target} echo in-target 2>&1; echo "rc=$?"
done
echo "== unknown-read"
export _CONDOR_SEC_TOKEN_DIRECTORY={dirs}/read
"$_CONDOR_BIN/condor_ssh_to_job" 99999.0 true 2>&1; echo "rc=$?"
echo "== unknown-none"
export _CONDOR_SEC_TOKEN_DIRECTORY={dirs}/none
"$_CONDOR_BIN/condor_ssh_to_job" -auto-retry 99999.0 true 2>&1; echo "rc=$?"
"""
SLEEPER = "executable = /bin/sleep\narguments = 600\nqueue\n"


@ISOLATED
def test_ssh_to_job_from_an_isolated_job_needs_a_token_with_write(pool, tmp_path):
    """As HTCondor's schedd: READ to look the job up, WRITE for its starter's address."""
    base = tmp_path / "tok"
    base.mkdir()
    token_dirs(pool, base)
    target = pool.submit(SLEEPER, "target.sub")
    pool.wait_for(target, lambda a: a["JobStatus"] == 2, timeout=60)
    assert pool.ssh_to_job(target, "true").returncode == 0  # its starter has reported in
    script = pool.submit_dir / "ssh.sh"
    script.write_text(SSH_SCRIPT.format(dirs=base, target=target))
    script.chmod(0o755)
    job = pool.submit("executable = ssh.sh\noutput = ssh.out\nqueue\n", "ssh.sub")
    pool.wait_for(job, lambda a: a["JobStatus"] == 4, timeout=90)
    got = sections((pool.submit_dir / "ssh.out").read_text())
    for name in ("none", "expired", "forged", "unknown-none"):
        assert got[name] == f"{CANT_CONNECT}rc=1\n", name
    assert got["read"] == f"{NO_CONNECT_INFO}rc=1\n"
    assert got["unknown-read"] == "Unable to fetch job ad; is it still in the queue?\nrc=1\n"
    assert got["readwrite"] == "in-target\nrc=0\n"
    # from the pool's own network nothing changed: no token asked for
    env = {"_CONDOR_SEC_TOKEN_DIRECTORY": str(base / "none")}
    outside = run_env(pool, "condor_ssh_to_job", target, "echo outside", **env)
    assert (outside.returncode, outside.stdout) == (0, "outside\n"), outside.stderr


def proxy_session(pool, tmp_path, job: str, ticket: str | None) -> subprocess.CompletedProcess:
    """``condor_ssh_to_job -proxy`` run by hand: keys made, but the ticket is the test's."""
    from localpool.clients.sshclient import keygen

    session = tmp_path / f"session{len(list(tmp_path.glob('session*')))}"
    session.mkdir(mode=0o700)
    keygen(session / "ssh_key")
    keygen(session / "host_key")
    if ticket is not None:
        (session / "ticket").write_text(ticket)
    return subprocess.run(
        [str(pool.bin / "condor_ssh_to_job"), "-proxy", str(session), job],
        env=pool.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_proxy_needs_the_session_the_schedd_gave(pool, tmp_path):
    """``-proxy`` (sshd in the job) is not a way round ``ssh_info`` (the schedd's check)."""
    from localpool.clients.wire import Pool as Wire

    first = pool.submit(SLEEPER, "a.sub")
    second = pool.submit(SLEEPER, "b.sub")
    for job in (first, second):
        pool.wait_for(job, lambda a: a["JobStatus"] == 2, timeout=60)
        assert pool.ssh_to_job(job, "true").returncode == 0  # its starter has reported in
    wire = Wire(pool.root)
    with open(os.devnull, "w") as null:
        here = os.open(".", os.O_PATH | os.O_DIRECTORY)
        try:
            info = wire.call(
                {"op": "ssh_info", "job": first, "auto_retry": False, "env": {}},
                [null.fileno(), null.fileno(), null.fileno(), here],
            )
        finally:
            os.close(here)
    assert info["rc"] == 0 and info.get("ticket"), info
    refused = f"condor_ssh_to_job: no session from the schedd for job {second}\n"
    for ticket in (None, "", "x.y", info["ticket"], info["ticket"][:-2] + "AA"):
        result = proxy_session(pool, tmp_path, second, ticket)
        assert (result.returncode, result.stderr) == (1, refused), ticket


def test_a_session_ticket_is_bound_to_job_caller_namespace_and_time(tmp_path):
    """A user's isolated job shares /tmp, where the user's tickets lie, but not the
    network namespace: a ticket taken from there must not open a session."""
    from localpool.schedd.store import Store
    from localpool.security.tokens import redeem, ticket

    store = Store(tmp_path / "pool")
    store.root.mkdir()
    here, isolated = "net:[4026531840]", "net:[4026532999]"
    issued = ticket(store, "3.0", 1000, ME, here, now=100.0)
    assert redeem(store, issued, "3.0", 1000, here, now=101.0) == ME
    assert redeem(store, issued, "4.0", 1000, here, now=101.0) is None  # another job
    assert redeem(store, issued, "3.0", 1001, here, now=101.0) is None  # another caller
    assert redeem(store, issued, "3.0", 1000, isolated, now=101.0) is None  # another netns
    assert redeem(store, issued, "3.0", 1000, here, now=100.0 + 3600) is None  # too late
    other = Store(tmp_path / "other")
    other.root.mkdir()
    assert redeem(other, issued, "3.0", 1000, here, now=101.0) is None  # another pool's key
    body, _, mac = issued.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["job"] = "4.0"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert redeem(store, f"{forged}.{mac}", "4.0", 1000, here, now=101.0) is None
