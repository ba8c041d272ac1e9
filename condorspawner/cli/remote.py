"""condorsub ssh and ssh-config: a shell, your ssh tools and your editor in a running job.

Everything goes through ``condor_ssh_to_job``: no inbound network path, the
job's container and environment, the job's owner. ``ssh-config`` writes an
OpenSSH client configuration whose ``ProxyCommand`` is ``condorsub ssh-proxy
'%n'`` (quoted for the shell ssh runs it with; names holding a quote or a
backslash are not matched, for ssh clients before 9.6 that let any name
through; the user name, which no ``Host`` line can check, is not passed); that runs
``condor_ssh_to_job -ssh "<python> -m condorspawner.cli
ssh-bridge ... --proxy=%x" JOB``. condor_ssh_to_job sets the session up (the
starter's sshd in the job, a fresh key pair and host key) and runs its "ssh
program" with ``%x`` (its own ProxyCommand: a byte stream to that sshd), ``%i``
(the session's private key), ``%k`` (its known_hosts) and ``%u`` (the job's
user) filled in. The bridge copies the key and the host key where the
configuration points the user's ssh, then runs that ProxyCommand on its own
stdin and stdout, which are the user's ssh's: one encrypted session from the
user's ssh to the job's sshd, nothing nested.

Where the key and the host key go: the session's keys are per connection, and
the user's ssh reads its configuration before the session exists, so the
configuration names fixed files per job, ``~/.condorsub/ssh/<host>/key-N`` and
``known_hosts-N`` for a few slots N. Each connection takes the next slot, so
connections opened at once (editors open several) do not overwrite each
other's files; ssh tries the slots' keys in turn and the job's sshd accepts only
its own session's. The private key is removed as soon as ssh has had time to
authenticate (and when the connection ends), the host key when the connection
ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from condorspawner.cli.exits import USAGE, CliError

SLOTS = 4  # connections to one job that may authenticate at the same moment
KEY_SECONDS = 30.0  # how long a session's private key stays where ssh reads it
HOST_ALIAS = "condor-job"
HOST_RE = re.compile(r"condor-(\d+)(?:\.(\d+))?")
KEY_TYPE_RE = re.compile(r"(ssh-|ecdsa-|sk-)[a-z0-9@.-]+$")
STATES = {1: "idle (not running yet)", 3: "removed", 4: "completed", 5: "held", 6: "transferring"}


def state_dir() -> Path:
    """Where the slots live: the user's own directory, never shared."""
    return Path.home() / ".condorsub" / "ssh"


def job_of_host(host: str) -> str:
    """``condor-123`` or ``condor-123.4`` as the job id ``123.0`` or ``123.4``."""
    match = HOST_RE.fullmatch(host)
    if not match:
        raise CliError(
            f"{host}: not a job's host name (condor-CLUSTER or condor-CLUSTER.PROC)", USAGE
        )
    return f"{match[1]}.{match[2] or 0}"


def job_id_of(text: str) -> str:
    from condorspawner.condor import check_job_ids

    try:
        (job_id,) = check_job_ids([text])
    except ValueError as err:
        raise CliError(str(err), USAGE) from None
    return job_id if "." in job_id else f"{job_id}.0"


def running(tools: Any, job_id: str) -> None:
    """One clear line when the job is not there or not running (condor_ssh_to_job is terser)."""
    from condorspawner.cli.context import run

    attrs = ["JobStatus", "HoldReason"]
    ads = run(tools.q([job_id], attributes=attrs))
    if not ads:
        raise CliError(f"job {job_id} not found (not in the queue)")
    status = ads[0].get("JobStatus")
    if status != 2:
        what = STATES.get(status, f"in state {status}")
        reason = f": {ads[0]['HoldReason']}" if status == 5 and ads[0].get("HoldReason") else ""
        raise CliError(f"job {job_id} is {what}{reason}; it must be running")


def _exec(tools: Any, args: list[str]) -> int:
    """Become condor_ssh_to_job: its terminal, its signals, its exit code (the remote one's).

    The job runs (``running``), but a real schedd answers "retry" until the starter has
    reported in (seconds after the start): ``-auto-retry`` waits for it.
    """
    argv = tools.command("condor_ssh_to_job", ["-auto-retry", *args])
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, tools.environment())  # noqa: S606 (argument list, no shell)
    except OSError as err:
        raise CliError(f"cannot run {argv[0]}: {err.strerror}") from None
    return 1  # not reached


def ssh(args: Any) -> int:
    """``condorsub ssh JOB [COMMAND...]``: a login shell or a command in the job."""
    from condorspawner.cli.context import callers_tools, site

    job_id = job_id_of(args.job_id)
    tools = callers_tools(site())
    running(tools, job_id)
    return _exec(tools, [job_id, *args.remote_command])


# --- ssh-config ---------------------------------------------------------------


def _percent(text: str) -> str:
    """A path for ssh_config, where % starts a token."""
    return text.replace("%", "%%")


def _one_line(text: str) -> str:
    """``text`` if it cannot end an ssh_config line (a line break would start new options)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise CliError(
            f"{text!r}: a line break or control character cannot go in ssh_config", USAGE
        )
    return text


def _word(text: str) -> str:
    """One ssh_config argument: double-quoted if a blank, '#', quote or backslash is in it."""
    if not re.search(r"[\s#'\"\\]", _one_line(text)):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _program() -> list[str]:
    """How ssh should run condorsub again: this very installation."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "condorsub" and argv0.is_file():
        return [str(argv0.resolve())]
    return [sys.executable, "-m", "condorspawner.cli"]


def config_text() -> str:
    """The ``Host condor-*`` block: ssh condor-JOB reaches the job through condor_ssh_to_job."""
    base = _percent(_one_line(str(state_dir())))
    command = _program()
    site_file = os.environ.get("CONDORSPAWNER_SITE")
    if site_file:  # editors started from a desktop menu do not have the shell's environment
        command = ["env", f"CONDORSPAWNER_SITE={os.path.abspath(site_file)}", *command]
    proxy = " ".join(_percent(shlex.quote(_one_line(word))) for word in command)
    keys = "\n".join(f"    IdentityFile {_word(f'{base}/%n/key-{n}')}" for n in range(SLOTS))
    known = " ".join(_word(f"{base}/%n/known_hosts-{n}") for n in range(SLOTS))
    return f"""\
# condorsub ssh-config: ssh, scp, sftp, rsync -e ssh and editors (VS Code Remote-SSH,
# JetBrains Gateway, Emacs TRAMP) into your running HTCondor jobs: ssh condor-<JOB>,
# e.g. ssh condor-123 or scp file condor-123.0:. Written by condorsub; run it again after
# moving condorsub or the site file.
# ssh hands the host name to a shell in quotes, so a name holding a quote, a backslash
# or a slash is never matched (ssh before 9.6 lets any name through)
Host condor-* "!*'*" "!*\\*" "!*/*"
    # condor_ssh_to_job opens the session (no network path into the job is needed)
    ProxyCommand {proxy} ssh-proxy '%n'
    # each session has a fresh key pair; condorsub ssh-proxy puts its key in a slot here
{keys}
    IdentitiesOnly yes
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    GSSAPIAuthentication no
    # Host keys: the job's sshd has a new host key in every session, so nothing of it
    # may go into ~/.ssh/known_hosts (it would be "changed" next time, or pile up).
    # As condor_ssh_to_job itself does, the key of this session, which it received
    # from the starter over HTCondor's authenticated channel, is the only one trusted:
    # strict checking against per-job files under {base} (written by
    # ssh-proxy, removed when the session ends), under one alias, never the user's or
    # the system's known_hosts, and ssh never adds to them.
    HostKeyAlias {HOST_ALIAS}
    UserKnownHostsFile {known}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    CheckHostIP no
    # slots of other sessions missing is normal: no "no such identity" lines
    LogLevel ERROR
"""


def default_config_path() -> Path:
    return Path.home() / ".ssh" / "condorsub.config"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (0600) through a temporary file and a rename: all or nothing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def add_include(config: Path, line: str) -> bool:
    """Put ``line`` first in the user's ssh config (unless there); False if it already was.

    First, because ssh takes the first value it finds for each option and an Include
    below a ``Host`` line would apply only to that block. The old file is kept beside
    it as ``config.condorsub-backup``; a symlinked config is edited where it points.
    """
    target = config.resolve() if config.is_symlink() else config
    try:
        old = target.read_text()
    except FileNotFoundError:
        old = None
    if old is not None and line in (raw.strip() for raw in old.splitlines()):
        return False
    mode = target.stat().st_mode & 0o777 if old is not None else 0o600
    if old is not None:
        _write_private(target.with_name(target.name + ".condorsub-backup"), old)
    _write_private(target, f"# added by condorsub ssh-config --include\n{line}\n\n{old or ''}")
    target.chmod(mode)
    return True


def ssh_config(args: Any) -> int:
    """Print the configuration, or write it (0600) and say the one line to add (or add it)."""
    text = config_text()
    if args.write is None and not args.include:
        print(text, end="")
        return 0
    path = Path(args.write or default_config_path()).expanduser().absolute()
    line = f"Include {_word(str(path))}"
    try:
        _write_private(path, text)
        path.chmod(0o600)
        print(f"wrote {path}")
        if not args.include:
            print(f"add this line at the top of ~/.ssh/config (before any Host line):\n{line}")
            return 0
        user_config = Path.home() / ".ssh" / "config"
        if add_include(user_config, line):
            print(f"added to {user_config}: {line}")
        else:
            print(f"{user_config} already has: {line}")
    except OSError as err:
        raise CliError(f"cannot write {err.filename or path}: {err.strerror}") from None
    return 0


# --- what ssh runs: ssh-proxy, and the bridge condor_ssh_to_job runs -----------------


class Slot:
    """One of a job's slots: the files the configuration points ssh at, for one session."""

    def __init__(self, host: str) -> None:
        self.directory = state_dir() / host
        self.host_lines: str | None = None
        self.key_text: str | None = None
        for path in (self.directory.parent.parent, self.directory.parent, self.directory):
            path.mkdir(mode=0o700, exist_ok=True)
        with self._locked():
            counter = self.directory / "next"
            try:
                number = int(counter.read_text() or 0)
            except (FileNotFoundError, ValueError):
                number = 0
            counter.write_text(str(number + 1))
        self.key = self.directory / f"key-{number % SLOTS}"
        self.known = self.directory / f"known_hosts-{number % SLOTS}"

    @contextlib.contextmanager
    def _locked(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def fill(self, key: Path, known: Path) -> None:
        """The session's private key and host key, as ssh will look for them."""
        lines = []
        for line in known.read_text().splitlines():  # "<hosts> <type> <key>", any host names
            words = line.split()
            at = next((i for i, w in enumerate(words) if KEY_TYPE_RE.match(w)), None)
            if at is not None and at + 1 < len(words):
                lines.append(f"{HOST_ALIAS} {words[at]} {words[at + 1]}\n")
        if not lines:
            raise CliError(f"condor_ssh_to_job gave no host key in {known}")
        self.key_text, self.host_lines = key.read_text(), "".join(lines)
        with self._locked():
            _write_private(self.key, self.key_text)
            _write_private(self.known, self.host_lines)

    def _remove_if_ours(self, path: Path, text: str | None) -> None:
        with contextlib.suppress(OSError):
            if path.read_text() == text:
                path.unlink()

    def forget_key(self) -> None:
        """The private key goes; a later session's key in the same slot stays."""
        with self._locked():
            self._remove_if_ours(self.key, self.key_text)

    def empty(self) -> None:
        """Remove this session's files, unless a later session has the slot already."""
        with self._locked():
            self._remove_if_ours(self.key, self.key_text)
            self._remove_if_ours(self.known, self.host_lines)


def ssh_proxy(argv: list[str]) -> int:
    """``condorsub ssh-proxy HOST [USER]``: ssh's ProxyCommand for ``Host condor-*``.

    USER comes only from configurations written before it was left out; with it the
    bridge says so when it is not the job's owner."""
    from condorspawner.cli.context import callers_tools, site

    if len(argv) not in (1, 2):
        raise CliError("usage: condorsub ssh-proxy condor-JOB (ssh's ProxyCommand)", USAGE)
    host = argv[0]
    job_id = job_of_host(host)
    tools = callers_tools(site())
    running(tools, job_id)
    program = [sys.executable, "-m", "condorspawner.cli", "ssh-bridge", *argv]
    placeholders = ["--proxy=%x", "--key=%i", "--known=%k", "--owner=%u"]
    # -ssh is split like HTCondor arguments (blanks, single quotes) and % is its escape
    words = [_v2_word(word.replace("%", "%%")) for word in program]
    return _exec(tools, ["-ssh", " ".join([*words, *placeholders]), job_id])


def _v2_word(word: str) -> str:
    if word and not re.search(r"[\s'\"]", word):
        return word
    return "'" + word.replace("'", "''") + "'"


def ssh_bridge(argv: list[str]) -> int:
    """The "ssh program" condor_ssh_to_job runs: hand ssh's stream to the job's sshd.

    ``ssh-bridge HOST [USER] --proxy=%x --key=%i --known=%k --owner=%u`` and then
    whatever condor_ssh_to_job adds for a real ssh (ignored).
    """
    names = [arg for arg in argv[:2] if not arg.startswith("--")]
    if not names:
        raise CliError("ssh-bridge is run by condorsub ssh-proxy", USAGE)
    host, user = names[0], names[1] if len(names) > 1 else None
    job_of_host(host)  # the slot's directory is named after it
    given = dict(arg[2:].split("=", 1) for arg in argv[1:] if arg.startswith("--") and "=" in arg)
    if not {"proxy", "key", "known", "owner"} <= given.keys():
        raise CliError("ssh-bridge: condor_ssh_to_job gave no --proxy, --key, --known, --owner")
    if user is not None and user != given["owner"]:
        raise CliError(
            f"{host} runs as {given['owner']!r}, not {user!r}: ssh {given['owner']}@{host}", USAGE
        )
    slot = Slot(host)
    slot.fill(Path(given["key"]), Path(given["known"]))
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", f"exec {given['proxy']}"])
        # only the proxy holds ssh's pipe now: when it ends, ssh sees the end
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        deadline = time.monotonic() + KEY_SECONDS
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        slot.forget_key()
        return proc.wait()
    finally:
        slot.empty()
