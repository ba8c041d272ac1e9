"""Files in a user's own directories, handled as that user and never as root.

The hub runs as root for many users, and each user owns their home: they may
plant a symlink where the hub expects a directory (``~/jupyter -> /etc``). So
whatever the hub does there (make the submit and work directories, write the
job's files and the private token file, read the tail of an error log,
remove a server's files, sweep what a killed ``condor_ssh_to_job`` left) runs
in a small process as the user, started through the site's run-as prefix
(``sudo -n -u alice``): the kernel then refuses the user's tricks exactly as
it refuses the user. With no run-as prefix (the hub is the user, as in a
single-account set-up) the same code runs in the hub's own process.

As the user: ``python -m condorspawner.userfiles OPERATION`` with a JSON
request on stdin and a JSON answer on stdout.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from condorspawner.processes import communicate_within

TIMEOUT = 60.0
SESSION_MIN_AGE = 60.0
SSH_SESSION_RE = re.compile(r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9_.@-]*)\.condor_ssh_to_job_\w+\Z")


class UserFilesError(RuntimeError):
    """A file operation as the user failed; the message says which and why."""


# --- the operations (run as the user) ---------------------------------------------


def prepare(dirs: Sequence[Sequence[Any]], files: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Make directories (``[path, mode or None]``) and write files (``[path, text, mode]``)."""
    for path, mode in dirs:
        Path(path).mkdir(parents=True, exist_ok=True)
        if mode is not None:
            os.chmod(path, mode)
    for path, text, mode in files:
        target = Path(path)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return {}


TAIL_BYTES = 64 * 1024


def tail(path: str, lines: int) -> dict[str, Any]:
    """The last lines of a regular file, from its last 64 KiB (empty if it cannot be read).

    The user controls the path: a FIFO must not block the helper (opened non-blocking)
    and a device such as /dev/zero must not be read at all (regular files only).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return {"text": ""}
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return {"text": ""}
        os.lseek(fd, max(0, info.st_size - TAIL_BYTES), os.SEEK_SET)
        text = os.read(fd, TAIL_BYTES).decode(errors="replace")
    except OSError:
        return {"text": ""}
    finally:
        os.close(fd)
    return {"text": "\n".join(text.strip().splitlines()[-lines:])}


def remove(paths: Sequence[str]) -> dict[str, Any]:
    """Remove files or directory trees (what is missing is fine)."""
    for path in paths:
        target = Path(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
    return {}


def _in_use() -> str:
    """The command lines of this user's processes, joined (to see which sessions live)."""
    me, seen = os.getuid(), []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == me:
                seen.append((entry / "cmdline").read_bytes().decode(errors="replace"))
        except OSError:
            continue
    return "\n".join(seen)


def sweep_ssh_sessions() -> dict[str, Any]:
    """Remove ``<tmp>/<me>.condor_ssh_to_job_*`` directories no live process of mine uses.

    ``condor_ssh_to_job`` removes its session directory (a key pair, known_hosts,
    a socket) when its ssh ends, but not when it is killed itself. A directory
    younger than a minute may belong to a session still starting: it stays.
    """
    import time

    me = getpass.getuser()
    roots = {tempfile.gettempdir(), "/tmp"}  # noqa: S108 (where condor_ssh_to_job puts them)
    used = _in_use()
    removed = []
    for root in roots:
        for entry in Path(root).glob(f"{me}.condor_ssh_to_job_*"):
            match = SSH_SESSION_RE.match(entry.name)
            if match and match["user"] == me and entry.name not in used:
                info = entry.lstat()
                young = time.time() - info.st_mtime < SESSION_MIN_AGE
                if info.st_uid == os.getuid() and stat.S_ISDIR(info.st_mode) and not young:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(str(entry))
    return {"removed": removed}


OPERATIONS = {
    "prepare": lambda r: prepare(r["dirs"], r["files"]),
    "tail": lambda r: tail(r["path"], int(r["lines"])),
    "remove": lambda r: remove(r["paths"]),
    "sweep_ssh_sessions": lambda r: sweep_ssh_sessions(),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in OPERATIONS:
        print(f"usage: condorspawner.userfiles {{{','.join(OPERATIONS)}}}", file=sys.stderr)
        return 2
    try:
        answer = OPERATIONS[argv[0]](json.load(sys.stdin))
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"{argv[0]}: {err}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout)
    return 0


# --- the hub's side ---------------------------------------------------------------


class UserFiles:
    """Runs the operations above as one user: through ``prefix`` (run-as), else in-process."""

    def __init__(self, prefix: Sequence[str], python: str = sys.executable) -> None:
        self.prefix = list(prefix)
        self.python = python

    async def call(self, operation: str, **request: Any) -> dict[str, Any]:
        if not self.prefix:
            try:
                return OPERATIONS[operation](request)
            except (OSError, ValueError) as err:
                raise UserFilesError(f"{operation}: {err}") from None
        # -I: the user's environment and site-packages do not reach this process
        argv = [*self.prefix, self.python, "-I", "-m", "condorspawner.userfiles", operation]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd="/",
                start_new_session=True,  # no terminal of the hub's for the user's process
            )
        except OSError as err:
            raise UserFilesError(f"{operation}: cannot run {argv[0]}: {err}") from None
        try:
            # its own session: the group holds the sudo'd helper too
            out, err = await communicate_within(proc, json.dumps(request).encode(), TIMEOUT)
        except TimeoutError:
            raise UserFilesError(f"{operation}: no answer within {TIMEOUT:g} s") from None
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise UserFilesError(message[-1] if message else f"{operation}: exit {proc.returncode}")
        return json.loads(out or b"{}")

    async def prepare(
        self, dirs: Sequence[tuple[str, int]], files: Sequence[tuple[str, str, int]]
    ) -> None:
        await self.call("prepare", dirs=list(dirs), files=list(files))

    async def tail(self, path: str, lines: int = 10) -> str:
        try:
            return (await self.call("tail", path=path, lines=lines)).get("text", "")
        except UserFilesError:
            return ""

    async def remove(self, *paths: str) -> None:
        await self.call("remove", paths=list(paths))

    async def sweep_ssh_sessions(self) -> list[str]:
        return (await self.call("sweep_ssh_sessions")).get("removed", [])


if __name__ == "__main__":
    sys.exit(main())
