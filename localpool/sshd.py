"""condor_ssh_to_job the way HTCondor does it: the client's ssh, a proxy, ``sshd -i`` in the job.

The client makes a per-session directory with a fresh key pair and a known
host key, and runs ``ssh`` (or the ``-ssh`` command given) with
``-oProxyCommand`` pointing at this module's proxy. The proxy starts
``sshd -i`` inside the job's network namespace, as the job's owner, with a
forced command that enters the job's environment and working directory, so
``-L``/``-R`` forwards and remote commands land inside the job, exactly as
with a real starter. The sshd settings follow the starter's template
(ctr ciphers, hmac-sha2 MACs).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localpool.daemon import RUNNING, STARTER_FILE
from localpool.store import PoolNotFound, Store

RETRY_HINT = "(Use -auto-retry to keep trying periodically.)\n"
NO_JOB = "Unable to fetch job ad; is it still in the queue?\n"
SSHD = "/usr/sbin/sshd"
SSHD_CONFIG = """\
# localpool: condor_ssh_to_job's sshd, after HTCondor's starter template
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile none
AcceptEnv *
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


def _me() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


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


def ssh_to_job(argv: Sequence[str], store: Store) -> int:
    """The ``condor_ssh_to_job`` command."""
    if argv[:1] == ["-proxy"]:
        return proxy(argv[1:])
    ssh_command = "ssh"
    auto_retry = False
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-ssh":
            i += 1
            if i >= len(argv):
                sys.stderr.write("condor_ssh_to_job: -ssh requires an argument\n")
                return 1
            ssh_command = argv[i]
        elif arg == "-auto-retry":
            auto_retry = True
        elif arg in ("-name", "-pool", "-keygen-options", "-keygen-type", "-shells"):
            i += 1
        elif arg in ("-debug", "-X", "-x", "-remove-on-interrupt", "-no-remote-command"):
            pass
        elif arg.startswith("-") and not rest:
            sys.stderr.write(f"condor_ssh_to_job: unknown option {arg}\n")
            return 1
        else:
            rest = list(argv[i:])
            break
        i += 1
    if not rest:
        sys.stderr.write("Usage: condor_ssh_to_job [options] <job id> [command]\n")
        return 1
    job_id = rest[0] if "." in rest[0] else f"{rest[0]}.0"
    if not store.exists():
        sys.stderr.write(f"ERROR: {PoolNotFound(store.root)}\n")
        return 1
    while True:
        ad, info = _job_state(store, job_id)
        if ad is None:
            sys.stderr.write(NO_JOB)
            return 1
        if _ready(store, ad, info):
            break
        if not auto_retry:
            sys.stderr.write(RETRY_HINT)
            return 1
        time.sleep(5)
    me = _me()
    if me not in (ad["Owner"], "root"):
        sys.stderr.write(f"Permission denied: job {job_id} belongs to {ad['Owner']}\n")
        return 1
    return _run_ssh(store, job_id, ad, ssh_command, rest[1:], me)


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _run_ssh(
    store: Store, job_id: str, ad: dict[str, Any], ssh_command: str, command: list[str], me: str
) -> int:
    host = store.config().host
    session = Path(tempfile.mkdtemp(prefix=f"{me}.condor_ssh_to_job_"))
    try:
        _keygen(session / "ssh_key")
        _keygen(session / "host_key")
        host_pub = (session / "host_key.pub").read_text().split()
        (session / "known_hosts").write_text(f"condor-job.{host} {host_pub[0]} {host_pub[1]}\n")
        proxy_cmd = shlex.join(
            [
                sys.executable,
                "-m",
                "localpool.sshd",
                "-proxy",
                str(store.root),
                str(session),
                job_id,
            ]
        )
        known = session / "known_hosts"
        argv = [
            *shlex.split(ssh_command),
            "-S",
            "none",
            f"-oUser={ad['Owner']}",
            f"-oIdentityFile={session / 'ssh_key'}",
            "-oIdentitiesOnly=yes",
            "-oStrictHostKeyChecking=yes",
            f"-oUserKnownHostsFile={known}",
            f"-oGlobalKnownHostsFile={known}",
            f"-oProxyCommand={proxy_cmd}",
            f"condor-job.{host}",
            *command,
        ]
        try:
            proc = subprocess.Popen(argv)
        except OSError as err:
            sys.stderr.write(f"condor_ssh_to_job: cannot run {argv[0]}: {err}\n")
            return 1
        # ended by a signal (a tunnel's owner going away): take ssh along
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return proc.wait()
    finally:
        shutil.rmtree(session, ignore_errors=True)


def proxy(argv: Sequence[str]) -> int:
    """ProxyCommand: ``sshd -i`` in the job's namespace, as its owner, on our stdin/stdout."""
    root, session, job_id = argv[0], Path(argv[1]), argv[2]
    store = Store(root)
    job_dir = store.job_dir(job_id)
    try:
        info = json.loads((job_dir / STARTER_FILE).read_text())
    except (OSError, ValueError):
        sys.stderr.write(NO_JOB)
        return 1
    uid, gid = info["uid"], info["gid"]
    sdir = job_dir / "ssh" / session.name
    sdir.mkdir(parents=True, mode=0o700)
    shutil.copyfile(session / "host_key", sdir / "host_key")
    (sdir / "host_key").chmod(0o600)
    script = sdir / "session.sh"
    script.write_text(
        SESSION_SCRIPT.format(
            env_file=shlex.quote(str(job_dir / "job_env.sh")), workdir=shlex.quote(info["workdir"])
        )
    )
    script.chmod(0o700)
    client_key = (session / "ssh_key.pub").read_text().strip()
    (sdir / "authorized_keys").write_text(f'command="{script}" {client_key}\n')
    (sdir / "sshd_config").write_text(
        SSHD_CONFIG.format(
            host_key=sdir / "host_key",
            authorized_keys=sdir / "authorized_keys",
            root_login="prohibit-password" if uid == 0 else "no",
        )
    )
    marker = _session_marker(Path(info["scratch"]))
    owned = [job_dir / "ssh", sdir, *sdir.iterdir()] + ([marker] if marker else [])
    if os.geteuid() == 0:
        for path in owned:
            os.chown(path, uid, gid)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    command = [SSHD, "-i", "-e", "-f", str(sdir / "sshd_config")]
    if uid != os.geteuid():
        command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--", *command]
    if info.get("namespace"):
        command = ["nsenter", f"--net=/proc/{info['pid']}/ns/net", "--", *command]
    try:
        return subprocess.run(command, check=False).returncode
    finally:
        shutil.rmtree(sdir, ignore_errors=True)
        if marker is not None:
            shutil.rmtree(marker, ignore_errors=True)


def _session_marker(scratch: Path) -> Path | None:
    """``.condor_ssh_to_job_N`` in the scratch dir while a session lasts (as the starter does)."""
    for n in range(1, 1000):
        marker = scratch / f".condor_ssh_to_job_{n}"
        try:
            marker.mkdir()
            return marker
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


def interactive_session(store: Store, job_id: str) -> int:
    """``condor_submit -interactive``: wait for the job, give the shell, remove the job."""
    from localpool.tools import job_action

    sys.stdout.write("Waiting for job to start...\n")
    sys.stdout.flush()
    try:
        while True:
            ad, info = _job_state(store, job_id)
            if ad is None or ad["JobStatus"] not in (1, RUNNING):
                sys.stderr.write(f"\nJob {job_id} is no longer waiting to run.\n")
                return 1
            if _ready(store, ad, info):
                break
            time.sleep(0.5)
        return _run_ssh(store, job_id, ad, "ssh", [], _me())
    finally:
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            job_action("condor_rm", [job_id], store)


if __name__ == "__main__":
    sys.exit(ssh_to_job(sys.argv[1:], Store()))
