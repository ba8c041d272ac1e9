"""``condor_ssh_to_job`` on the client's side (standard library only), as the real client does it.

Run as the calling user: a session directory ``$TMPDIR/<user>.condor_ssh_to_job_<random>``
with a fresh key pair and a known_hosts file, then ``ssh`` whose
``-oProxyCommand`` is this tool's own ``-proxy``, which hands ssh's pipe to
the pool process (``localpool.startd.sshd`` starts ``sshd -i`` in the job).
``condor_submit -interactive`` ends here too: the shell, then the job's removal.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from localpool.clients.wire import Pool, recv_message, send_message, stdio

AUTO_RETRY_SECONDS = 5.0


def _me() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def keygen(path: Path) -> None:
    """A fresh ed25519 key pair without passphrase: ``path`` and ``path.pub``."""
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
    keygen(session / "ssh_key")
    keygen(session / "host_key")
    host_pub = (session / "host_key.pub").read_text().split()
    host = f"condor-job.{info['host']}"
    known = session / "known_hosts"
    known.write_text(f"{host} {host_pub[0]} {host_pub[1]}\n")
    if info.get("ticket"):  # the schedd's yes, for our -proxy (a secret: not on its argv)
        fd = os.open(session / "ticket", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "w") as f:
            f.write(info["ticket"])
    values = {
        "x": shlex.join([tool, "-proxy", str(session), job_id]),
        "u": info["owner"],
        "h": info["host"],
        "i": str(session / "ssh_key"),
        "k": str(known),
    }
    argv = ssh_command(ssh, values)
    if isinstance(argv, str):
        sys.stderr.write(argv)
        shutil.rmtree(session, ignore_errors=True)
        return 1
    argv += cmd
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


def ssh_command(ssh: str, values: dict[str, str]) -> list[str] | str:
    """The ``-ssh`` program's arguments as HTCondor builds them (ssh_to_job.cpp), or an error.

    The program, the ``-ssh`` string's further words, then the defaults: ``-S none``
    for ``ssh`` only (scp and sftp lack it), the session's user, key and known_hosts,
    ``-oProxyCommand=%x`` and ``condor-job.%h`` (not for scp). In every argument,
    the user's words too, ``%x`` (the proxy command, a /bin/sh command line), ``%u``,
    ``%h``, ``%i``, ``%k`` and ``%%`` are replaced; any other ``%`` is an error.
    ``-oIdentitiesOnly=yes`` is localpool's own addition.
    """
    try:
        words = shlex.split(ssh)
    except ValueError as err:
        return f"Failed to parse ssh options ({ssh}): {err}\n"
    if not words:
        return f"Failed to parse ssh options ({ssh}): empty\n"
    base = os.path.basename(words[0])
    template = [
        words[0],
        *words[1:],
        *(["-S", "none"] if base == "ssh" else []),
        "-oUser=%u",
        "-oIdentityFile=%i",
        "-oIdentitiesOnly=yes",
        "-oStrictHostKeyChecking=yes",
        "-oUserKnownHostsFile=%k",
        "-oGlobalKnownHostsFile=%k",
        "-oProxyCommand=%x",
        *([] if base == "scp" else ["condor-job.%h"]),
    ]
    argv = []
    for word in template:
        out, i = "", 0
        while i < len(word):
            if word[i] != "%":
                out += word[i]
            elif word[i + 1 : i + 2] == "%":
                out += "%"
                i += 1
            elif word[i + 1 : i + 2] in values:
                out += values[word[i + 1]]
                i += 1
            else:
                return f"Unexpected %{word[i + 1 : i + 2] or ' '} in ssh command: {ssh}\n"
            i += 1
        argv.append(out)
    return argv


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
    args, name = argv[1:], None
    if "-name" in args[:-1]:  # one schedd of several: "NAME#C.P" to the pool
        at = args.index("-name")
        name, args = args[at + 1], args[:at] + args[at + 2 :]
    parsed = _parse_ssh_args(args)
    if isinstance(parsed, str):
        sys.stderr.write(parsed)
        return 1
    ssh, auto_retry, rest = parsed
    job_id = rest[0] if "." in rest[0] else f"{rest[0]}.0"
    job_id = f"{name}#{job_id}" if name else job_id
    while True:
        ask = {"op": "ssh_info", "job": job_id, "auto_retry": auto_retry, "env": dict(os.environ)}
        info = pool.call(ask)
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
    try:
        session_ticket = (session / "ticket").read_text().strip()
    except FileNotFoundError:
        session_ticket = ""  # the pool refuses: only the schedd's yes lets the proxy in
    message = {
        "op": "ssh_proxy",
        "job": job_id,
        "client_key": (session / "ssh_key.pub").read_text().strip(),
        "host_key": (session / "host_key").read_text(),
        "ticket": session_ticket,
    }
    sock = pool.open()
    with sock:
        fds = stdio()
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
        name, _, plain = job_id.rpartition("#")
        argv = ["condor_rm", *(["-name", name] if name else []), plain]
        remove = {"op": "tool", "argv": argv, "env": {}, "umask": 0o022}
        pool.call(remove, [0, null, null, here])
        os.close(here)
        os.close(null)
