"""The ``condor_*`` commands as thin clients of the pool process (standard library only).

A tool sends its argv, environment and umask, with its stdin, stdout,
stderr and current directory as file descriptors (SCM_RIGHTS), over the
pool's Unix socket and exits with the code the pool answers. The pool
process knows the caller from the socket (SO_PEERCRED), the way HTCondor's
FS authentication does, and runs the command as that user. Only
``condor_ssh_to_job`` (the session directory, keys and ``ssh`` run as the
calling user, as the real client does) and ``condor_chirp`` (spoken to the
job's starter) do more here. This module imports nothing outside the
standard library: any account's ``/usr/bin/python3`` runs it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

DIR_ENV = "LOCALPOOL_DIR"
SOCKET_NAME = "pool.sock"
CONF_NAME = "localpool.conf"
HEADER = struct.Struct("!I")
MAX_MESSAGE = 16 * 1024 * 1024
FD_COUNT = 4  # stdin, stdout, stderr, current directory
AUTO_RETRY_SECONDS = 5.0


class NoPool(Exception):
    """No pool process answers at this directory."""


# --- the wire: one length-prefixed JSON message each way ------------------------


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] = ()) -> None:
    data = json.dumps(message).encode()
    payload = HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [payload], list(fds))
        payload = payload[sent:]
    if payload:
        sock.sendall(payload)


def recv_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors that came with it; (None, []) when the peer left."""
    if max_fds:
        data, fds, _flags, _addr = socket.recv_fds(sock, 65536, max_fds)
    else:
        data, fds = sock.recv(65536), []
    if not data:
        return None, fds
    while len(data) < HEADER.size:
        more = sock.recv(65536)
        if not more:
            return None, fds
        data += more
    (length,) = HEADER.unpack_from(data)
    if length > MAX_MESSAGE:
        raise ValueError("message too large")
    while len(data) < HEADER.size + length:
        more = sock.recv(65536)
        if not more:
            return None, fds
        data += more
    return json.loads(data[HEADER.size : HEADER.size + length]), fds


# --- finding and calling the pool -------------------------------------------------


def read_conf(path: Path) -> str | None:
    """``LOCALPOOL_DIR = /path`` from an installation's ``etc/localpool.conf``."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == DIR_ENV and value.strip():
            return value.strip()
    return None


def pool_dir(script: str, default: str | None = None) -> Path:
    """``$LOCALPOOL_DIR``, else ``../etc/localpool.conf`` beside the tool, else ``default``."""
    env = os.environ.get(DIR_ENV)
    if env:
        return Path(env)
    conf = Path(os.path.abspath(script)).parent.parent / "etc" / CONF_NAME
    found = read_conf(conf)
    if found:
        return Path(found)
    if default:
        return Path(default)
    import tempfile

    return Path(tempfile.gettempdir()) / f"localpool-{os.getuid()}"


def _connect(root: Path) -> socket.socket:
    """Connect by a relative name from inside the pool directory (socket paths are short)."""
    here = os.open(".", os.O_PATH | os.O_DIRECTORY)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(root)
        sock.connect(SOCKET_NAME)
    except OSError:
        sock.close()
        raise NoPool(str(root)) from None
    finally:
        os.fchdir(here)
        os.close(here)
    return sock


def _stdio() -> list[int]:
    """Our stdin, stdout, stderr (closed ones replaced by /dev/null) and our directory."""
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(os.open(os.devnull, os.O_RDWR))
    fds.append(os.open(".", os.O_PATH | os.O_DIRECTORY))
    return fds


def _direct(root: Path, python: str | None) -> socket.socket:
    """No pool process: its owner may still read the state (``localpool.server --direct``)."""
    import subprocess

    if not python or not os.access(root / "pool.json", os.R_OK):
        raise NoPool(str(root))
    ours, theirs = socket.socketpair()
    subprocess.Popen(
        [python, "-m", "localpool.server", "--direct", str(root), str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        cwd=Path(__file__).resolve().parents[1],
    )
    theirs.close()
    return ours


class Pool:
    """One pool directory, reached through its socket (or directly by its owner)."""

    def __init__(self, root: Path, python: str | None = None) -> None:
        self.root = root
        self.python = python

    def open(self) -> socket.socket:
        try:
            return _connect(self.root)
        except NoPool:
            return _direct(self.root, self.python)

    def call(self, message: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        """Send one request with our stdio and directory; the pool's answer."""
        sock = self.open()
        with sock:
            own = fds is None
            fds = _stdio() if own else fds
            try:
                send_message(sock, message, fds)
            finally:
                if own:
                    os.close(fds[-1])
            reply, _ = recv_message(sock)
        if reply is None:
            sys.stderr.write("ERROR: the pool process ended the request\n")
            return {"rc": 1}
        return reply

    def tool(self, argv: list[str]) -> dict[str, Any]:
        umask = os.umask(0o022)
        os.umask(umask)
        return self.call({"op": "tool", "argv": argv, "env": dict(os.environ), "umask": umask})


# --- condor_ssh_to_job: the client's side -------------------------------------------


def _me() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _keygen(path: Path) -> None:
    import subprocess

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _session_dir() -> Path:
    """``$TMPDIR/<user>.condor_ssh_to_job_<random>``, as the real client makes it."""
    import secrets

    base = Path(os.environ.get("TMPDIR") or "/tmp")  # noqa: S108 (as the real client)
    for _ in range(100):
        path = base / f"{_me()}.condor_ssh_to_job_{secrets.token_hex(4)}"
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(f"cannot make a session directory in {base}")


def run_ssh(
    pool: Pool, tool: str, job_id: str, info: dict[str, Any], ssh: str, cmd: list[str]
) -> int:
    """Keys, known_hosts, ``ssh`` through our ``-proxy``; remove the session when ssh ends.

    Killed ourselves (SIGTERM, SIGKILL), we leave the session directory and
    ssh behind, as HTCondor's condor_ssh_to_job does.
    """
    import shutil
    import subprocess

    session = _session_dir()
    _keygen(session / "ssh_key")
    _keygen(session / "host_key")
    host_pub = (session / "host_key.pub").read_text().split()
    host = f"condor-job.{info['host']}"
    known = session / "known_hosts"
    known.write_text(f"{host} {host_pub[0]} {host_pub[1]}\n")
    proxy = shlex.join([tool, "-proxy", str(session), job_id])
    argv = [
        *shlex.split(ssh),
        "-S",
        "none",
        f"-oUser={info['owner']}",
        f"-oIdentityFile={session / 'ssh_key'}",
        "-oIdentitiesOnly=yes",
        "-oStrictHostKeyChecking=yes",
        f"-oUserKnownHostsFile={known}",
        f"-oGlobalKnownHostsFile={known}",
        f"-oProxyCommand={proxy}",
        host,
        *cmd,
    ]
    try:
        proc = subprocess.Popen(argv)
    except OSError as err:
        sys.stderr.write(f"condor_ssh_to_job: cannot run {argv[0]}: {err}\n")
        shutil.rmtree(session, ignore_errors=True)
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ssh decides what Ctrl-C means
    code = proc.wait()
    shutil.rmtree(session, ignore_errors=True)
    return code


def _parse_ssh_args(args: list[str]) -> tuple[str, bool, list[str]] | str:
    """(ssh command, auto retry, [job, command...]) or a usage message."""
    ssh, auto_retry, i = "ssh", False, 0
    while i < len(args):
        arg = args[i]
        if arg == "-ssh":
            i += 1
            if i >= len(args):
                return "condor_ssh_to_job: -ssh requires an argument\n"
            ssh = args[i]
        elif arg == "-auto-retry":
            auto_retry = True
        elif arg in ("-name", "-pool", "-keygen-options", "-keygen-type", "-shells"):
            i += 1
        elif arg in ("-debug", "-X", "-x", "-remove-on-interrupt", "-no-remote-command"):
            pass
        elif arg.startswith("-"):
            return f"condor_ssh_to_job: unknown option {arg}\n"
        else:
            return ssh, auto_retry, list(args[i:])
        i += 1
    return "Usage: condor_ssh_to_job [options] <job id> [command]\n"


def ssh_to_job(pool: Pool, argv: list[str]) -> int:
    """``condor_ssh_to_job [-ssh CMD] [-auto-retry] JOB [COMMAND]``."""
    if argv[1:2] == ["-proxy"]:
        return proxy(pool, argv[2:])
    parsed = _parse_ssh_args(argv[1:])
    if isinstance(parsed, str):
        sys.stderr.write(parsed)
        return 1
    ssh, auto_retry, rest = parsed
    job_id = rest[0] if "." in rest[0] else f"{rest[0]}.0"
    while True:
        info = pool.call({"op": "ssh_info", "job": job_id, "auto_retry": auto_retry})
        if info["rc"] == 0:
            break
        if not (auto_retry and info.get("retry")):
            return info["rc"]
        time.sleep(AUTO_RETRY_SECONDS)
    return run_ssh(pool, os.path.abspath(argv[0]), job_id, info, ssh, rest[1:])


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: the proxy ends when its ssh does."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


def proxy(pool: Pool, args: list[str]) -> int:
    """ProxyCommand: hand ssh's pipe to the pool, which starts ``sshd -i`` in the job."""
    if len(args) != 2:
        sys.stderr.write("condor_ssh_to_job: -proxy SESSION JOB\n")
        return 1
    _die_with_parent()
    if os.getppid() == 1:
        return 1
    session, job_id = Path(args[0]), args[1]
    message = {
        "op": "ssh_proxy",
        "job": job_id,
        "client_key": (session / "ssh_key.pub").read_text().strip(),
        "host_key": (session / "host_key").read_text(),
    }
    sock = pool.open()
    with sock:
        fds = _stdio()
        send_message(sock, message, fds)
        os.close(fds[-1])
        # only sshd may hold ssh's pipe now: when sshd ends, ssh must see the end
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        reply, _ = recv_message(sock)
    return 1 if reply is None else int(reply.get("rc", 1))


def interactive(pool: Pool, tool: str, reply: dict[str, Any]) -> int:
    """The shell in the job ``condor_submit -interactive`` queued; the job goes after it."""
    job_id = reply["ssh"]
    ssh_tool = str(Path(tool).with_name("condor_ssh_to_job"))
    try:
        return run_ssh(pool, ssh_tool, job_id, reply, "ssh", [])
    finally:
        null = os.open(os.devnull, os.O_RDWR)
        here = os.open(".", os.O_PATH | os.O_DIRECTORY)
        remove = {"op": "tool", "argv": ["condor_rm", job_id], "env": {}, "umask": 0o022}
        pool.call(remove, [0, null, null, here])
        os.close(here)
        os.close(null)


# --- entry point --------------------------------------------------------------------


def main(
    argv: list[str] | None = None, pool_dir_default: str | None = None, python: str | None = None
) -> int:
    """What every ``condor_*`` script runs."""
    argv = list(sys.argv if argv is None else argv)
    tool = os.path.basename(argv[0])
    pool = Pool(pool_dir(argv[0], pool_dir_default), python)
    try:
        if tool == "condor_chirp":
            from localpool.chirpclient import main as chirp_main

            return chirp_main(argv[1:])
        if tool == "condor_ssh_to_job":
            return ssh_to_job(pool, argv)
        reply = pool.tool(argv)
        if reply.get("ssh"):  # condor_submit -interactive: the job runs, now the shell
            return interactive(pool, os.path.abspath(argv[0]), reply)
        return int(reply.get("rc", 1))
    except NoPool as err:
        sys.stderr.write(
            f"ERROR: no localpool answers in {err} (run 'localpool start', or set {DIR_ENV})\n"
        )
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
