"""condor_ssh_to_job on the pool's side: who may, and ``sshd -i`` in the job as its owner.

The client (``localpool.clients.sshclient``, running as the user) makes the session
directory with a fresh key pair and runs ``ssh`` with ``-oProxyCommand``
pointing at its own ``-proxy``; the proxy hands ssh's pipe to the pool
process, which checks that the caller owns the job (or is root), writes the
session's sshd files into ``.condor_ssh_to_job_N`` in the job's scratch
directory as the job's owner (the starter's session marker), and starts
``sshd -i`` inside the job's network namespace as the owner, with a forced
command that enters the job's environment and working directory. So
``-L``/``-R`` forwards (TCP and Unix sockets) and remote commands land inside
the job, as with a real starter. The sshd settings follow the starter's
template (ctr ciphers, hmac-sha2 MACs).

Two requests, as HTCondor's two daemons: ``ssh_info`` is the schedd's check
(a caller inside an isolated job needs a token: READ to look the job up,
WRITE for GET_JOB_CONNECT_INFO, with ssh_to_job.cpp's and dc_schedd.cpp's
refusals), and its yes is a ticket (``tokens.ticket``: this job, this uid,
for two minutes) that the client keeps in its 0700 session directory. The
proxy's ``ssh_proxy`` (the starter's part) starts sshd only for such a ticket,
so it is no way round the schedd's check.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from localpool.schedd.jobstate import HELD, RUNNING, STARTER_FILE
from localpool.schedd.store import Store
from localpool.security import privs
from localpool.security.authz import may_modify
from localpool.security.privs import Account
from localpool.security.tokens import NETNS_ENV, AuthError, authenticate, peer_netns, redeem, ticket

RETRY_HINT = "(Use -auto-retry to keep trying periodically.)\n"
NO_JOB = "Unable to fetch job ad; is it still in the queue?\n"
CANT_CONNECT = "Can't connect to schedd\n"  # ssh_to_job.cpp: its read-only queue connection
NO_CONNECT_INFO = "Failed to send GET_JOB_CONNECT_INFO to schedd\n"  # dc_schedd.cpp
STARTER_WAIT = 3.0  # seconds a just-matched job's starter gets to set up before "retry"
SSHD = "/usr/sbin/sshd"
SSHD_CONFIG = """\
# localpool: condor_ssh_to_job's sshd, after HTCondor's starter template
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile none
AcceptEnv *
Subsystem sftp /usr/lib/openssh/sftp-server
StrictModes no
LogLevel ERROR
X11Forwarding no
AllowTcpForwarding yes
PermitEmptyPasswords no
Ciphers aes128-ctr,aes192-ctr,aes256-ctr
MACs hmac-sha2-256,hmac-sha2-512
PermitRootLogin {root_login}
PermitUserEnvironment no
GSSAPIAuthentication no
KerberosAuthentication no
HostbasedAuthentication no
IgnoreRhosts yes
IgnoreUserKnownHosts yes
PrintLastLog no
PrintMotd no
UsePAM no
Compression delayed
"""
SESSION_SCRIPT = """\
#!/bin/sh
# The job's environment and working directory for an ssh session.
. {env_file}
cd {workdir} || exit 1
if [ -n "$SSH_ORIGINAL_COMMAND" ]; then
    exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
fi
exec /bin/bash -l
"""


def _job_state(store: Store, job_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    ad = store.read().jobs.get(job_id)
    try:
        info = json.loads((store.job_dir(job_id) / STARTER_FILE).read_text())
    except (OSError, ValueError):
        info = None
    return ad, info


def _ready(store: Store, ad: dict[str, Any], info: dict[str, Any] | None) -> bool:
    if ad["JobStatus"] != RUNNING or info is None or "LocalpoolStarterPid" not in ad:
        return False
    return time.time() >= info["started"] + store.config().ssh_ready_delay


def _unauthorized(caller: Account, job_id: str) -> str:
    return f"{caller.name} is not authorized for access to the starter for job {job_id}\n"


def _check(store: Store, caller: Account, job_id: str, auto_retry: bool) -> dict[str, Any]:
    """What the schedd and the starter answer before a session: ok, retry, or no."""
    ad, info = _job_state(store, job_id)
    deadline = time.monotonic() + STARTER_WAIT
    while ad is not None and ad["JobStatus"] == RUNNING and info is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)  # matched and starting: its starter is about to answer
        ad, info = _job_state(store, job_id)
    if ad is None:
        sys.stderr.write(NO_JOB)
        return {"rc": 1}
    if ad["JobStatus"] == HELD:  # the client reads it from the job's ad (case ssh_held)
        sys.stderr.write(f'The job is on hold: "{ad.get("HoldReason", "")}".\n')
        return {"rc": 1}
    if not may_modify(caller, ad):  # the schedd asks this before it asks the startd
        sys.stderr.write(_unauthorized(caller, job_id))
        return {"rc": 1}
    if not _ready(store, ad, info):
        if not auto_retry:
            sys.stderr.write(RETRY_HINT)
        return {"rc": 1, "retry": True}
    return {"rc": 0, "owner": ad["Owner"], "host": store.config().host, "info": info}


def _schedd_lets_in(
    store: Store, caller: Account, env: dict[str, str], job_id: str
) -> Account | None:
    """Whom the schedd takes the request for; None, its refusal printed, if nobody.

    As condor_ssh_to_job asks it: a read-only queue connection looks the job up
    (READ), then GET_JOB_CONNECT_INFO (WRITE). Only a caller in an isolated job
    is asked for a token (``tokens.authenticate``).
    """
    try:
        authenticate("condor_ssh_to_job", store, caller, env, level="READ")
    except AuthError:
        sys.stderr.write(CANT_CONNECT)
        return None
    if job_id not in store.read().jobs:
        sys.stderr.write(NO_JOB)
        return None
    try:
        return authenticate("condor_ssh_to_job", store, caller, env, level="WRITE")
    except AuthError:
        sys.stderr.write(NO_CONNECT_INFO)
        return None


def ssh_info(
    store: Store, caller: Account, job_id: str, auto_retry: bool, env: dict[str, str]
) -> dict[str, Any]:
    """May ``caller`` open a session to the job now? Yes comes with the proxy's ticket."""
    from localpool.schedd.schedds import ScheddError, job_key

    try:
        store, job_id = job_key(store, job_id)
    except ScheddError as err:
        sys.stderr.write(str(err))
        return {"rc": 1}
    account = _schedd_lets_in(store, caller, env, job_id)
    if account is None:
        return {"rc": 1}
    answer = _check(store, account, job_id, auto_retry)
    if answer.pop("info", None) is not None:
        where = env.get(NETNS_ENV, "")
        answer["ticket"] = ticket(
            store, f"{store.schedd}#{job_id}", caller.uid, account.name, where
        )
    return answer


def _write_session(
    owner: Account, info: dict[str, Any], env_text: str, client_key: str, host_key: str
) -> Path | None:
    """The session's sshd files in the job's scratch, written as the job's owner."""
    with privs.as_user(owner):
        marker = _session_marker(Path(info["scratch"]))
        if marker is None:
            return None
        files = {
            "host_key": host_key,
            "env.sh": env_text,
            "session.sh": SESSION_SCRIPT.format(
                env_file=shlex.quote(str(marker / "env.sh")),
                workdir=shlex.quote(info["workdir"]),
            ),
            "authorized_keys": f'command="{marker / "session.sh"}" {client_key}\n',
            "sshd_config": SSHD_CONFIG.format(
                host_key=marker / "host_key",
                authorized_keys=marker / "authorized_keys",
                root_login="prohibit-password" if owner.uid == 0 else "no",
            ),
        }
        for name, text in files.items():
            fd = os.open(marker / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "w") as f:
                f.write(text)
        (marker / "session.sh").chmod(0o700)
    return marker


def serve_proxy(
    store: Store, caller: Account, message: dict[str, Any], conn: socket.socket
) -> dict[str, Any]:
    """The ``-proxy`` request: sshd -i on our stdin/stdout (the proxy's, i.e. ssh's pipe)."""
    from localpool.schedd.schedds import ScheddError, job_key

    try:
        store, job_id = job_key(store, message["job"])
    except ScheddError as err:
        sys.stderr.write(str(err))
        return {"rc": 1}
    given = str(message.get("ticket") or "")
    name = redeem(store, given, f"{store.schedd}#{job_id}", caller.uid, peer_netns(conn))
    account = privs.account_named(name) if name else None
    if account is None:
        sys.stderr.write(f"condor_ssh_to_job: no session from the schedd for job {job_id}\n")
        return {"rc": 1}
    answer = _check(store, account, job_id, auto_retry=False)
    if answer["rc"] != 0:
        return answer
    info = answer["info"]
    owner = privs.account_named(info["user"])
    if owner is None:
        sys.stderr.write(NO_JOB)
        return {"rc": 1}
    try:
        env_text = (store.job_dir(job_id) / "job_env.sh").read_text()
    except OSError:
        sys.stderr.write(NO_JOB)
        return {"rc": 1}
    marker = _write_session(owner, info, env_text, message["client_key"], message["host_key"])
    if marker is None:
        sys.stderr.write("condor_ssh_to_job: cannot make the session directory in the job\n")
        return {"rc": 1}
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    command = [SSHD, "-i", "-e", "-f", str(marker / "sshd_config")]
    if owner.uid != os.geteuid():
        command = [
            "setpriv",
            f"--reuid={owner.uid}",
            f"--regid={owner.gid}",
            "--init-groups",
            "--",
            *command,
        ]
    if info.get("namespace"):
        command = ["nsenter", f"--net=/proc/{info['pid']}/ns/net", "--", *command]
    try:
        proc = subprocess.Popen(
            command, start_new_session=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        )
        _let_go_of_stdio()
        return {"rc": _wait(proc, conn)}
    finally:
        with privs.as_user(owner):
            shutil.rmtree(marker, ignore_errors=True)


def _let_go_of_stdio() -> None:
    """Only sshd holds ssh's pipe from now on: its end is the session's end."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _wait(proc: subprocess.Popen[bytes], conn: socket.socket) -> int:
    """sshd's exit code; if the proxy goes away first (its ssh ended), sshd goes too."""
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        readable, _, _ = select.select([conn], [], [], 0)
        if readable and not conn.recv(1, socket.MSG_PEEK):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                return proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait()


def _session_marker(scratch: Path) -> Path | None:
    """``.condor_ssh_to_job_N`` in the scratch dir while a session lasts (as the starter does)."""
    for n in range(1, 1000):
        marker = scratch / f".condor_ssh_to_job_{n}"
        try:
            marker.mkdir(mode=0o700)
            return marker
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


def wait_for_start(
    store: Store, caller: Account, job_id: str, netns: str
) -> tuple[int, dict[str, Any]]:
    """``condor_submit -interactive``: wait until the job runs, then the client's ssh."""
    from localpool.tools.actions import job_action

    sys.stdout.write("Waiting for job to start...\n")
    sys.stdout.flush()
    while True:
        ad, info = _job_state(store, job_id)
        if ad is None or ad["JobStatus"] not in (1, RUNNING):
            sys.stderr.write(f"\nJob {job_id} is no longer waiting to run.\n")
            with contextlib.redirect_stdout(open(os.devnull, "w")):
                job_action("condor_rm", [job_id], store, caller)
            return 1, {}
        if _ready(store, ad, info):
            from localpool.schedd.schedds import name_of

            key = job_id if store.schedd == 1 else f"{name_of(store)}#{job_id}"
            session = ticket(store, f"{store.schedd}#{job_id}", caller.uid, caller.name, netns)
            return 0, {
                "ssh": key,
                "owner": ad["Owner"],
                "host": store.config().host,
                "ticket": session,
            }
        time.sleep(0.5)
