"""Linux process facts a tunnel needs: parent-death signals, subreapers, descendants.

A tunnel runs ``condor_ssh_to_job`` through the site's run-as prefix, often a
set-user-ID ``sudo``, whose exec clears a parent-death signal; the helpers it
starts can also leave its process group (``sudo`` with ``use_pty`` starts a
new session). So the tunnel's keeper marks itself a *subreaper* (orphans of
its tree come back to it, not to init) and ends its whole tree by walking
``/proc``, whatever the processes' users and sessions.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterable
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """This process gets ``sig`` when its parent ends (Linux; cleared by a set-user-ID exec)."""
    _prctl(PR_SET_PDEATHSIG, int(sig))


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/PID/stat's fields from the state on (the name may hold spaces and ')')."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    return stat[stat.rfind(b")") + 2 :].decode().split()


def parent_of(pid: int) -> int | None:
    """``pid``'s parent now (None: it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): with the pid, who a process is; a
    pid that is reused gets another start time."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


class Snapshot:
    """The process table at one moment: each process's parent, start time and state."""

    def __init__(self) -> None:
        self.table: dict[int, tuple[int, int, str]] = {}  # pid -> (parent, start, state)
        self.children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            fields = _stat_fields(entry.name) if entry.name.isdigit() else None
            if fields:
                pid, parent = int(entry.name), int(fields[1])
                self.table[pid] = (parent, int(fields[19]), fields[0])
                self.children.setdefault(parent, []).append(pid)

    def below(self, pid: int) -> list[int]:
        """Every process below ``pid`` (children first)."""
        found, todo = [], list(self.children.get(pid, []))
        while todo:
            current = todo.pop(0)
            found.append(current)
            todo.extend(self.children.get(current, []))
        return found

    def start(self, pid: int) -> int | None:
        entry = self.table.get(pid)
        return entry[1] if entry else None

    def living(self, pid: int, start: int) -> bool:
        """Is this the very process (same start time), and not a zombie?"""
        entry = self.table.get(pid)
        return entry is not None and entry[1] == start and entry[2] != "Z"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first), as /proc shows them now."""
    return Snapshot().below(pid)


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def processes_carrying(marker: str, uids: Iterable[int] | None = None) -> list[int]:
    """Processes (not this one, of these users if given) whose command line contains ``marker``."""
    me, owners = os.getpid(), None if uids is None else set(uids)
    found = []
    for entry in Path("/proc").iterdir():
        pid = int(entry.name) if entry.name.isdigit() else me
        if pid == me or not any(marker in part for part in command_line(pid)):
            continue
        try:
            if owners is None or entry.stat().st_uid in owners:
                found.append(pid)
        except OSError:
            continue
    return found


def signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def alive(pid: int) -> bool:
    """Is ``pid`` a live process (not a zombie)?"""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _tcp_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` (IPv4, as /proc/net/tcp writes it) as ("127.0.0.1", 8080)."""
    host, port = text.split(":")
    octets = bytes.fromhex(host)[::-1] if len(host) == 8 else b""
    return (".".join(str(b) for b in octets) if octets else host), int(port, 16)


def tcp_sockets() -> list[tuple[tuple[str, int], tuple[str, int], int, int]]:
    """(local, remote, state, uid) of this network namespace's IPv4 TCP sockets."""
    found = []
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) > 7:
            local, remote = _tcp_address(fields[1]), _tcp_address(fields[2])
            found.append((local, remote, int(fields[3], 16), int(fields[7])))
    return found


def peer_uid(peer: tuple[str, int], me: tuple[str, int]) -> int | None:
    """Whose process holds the other end of a loopback connection that reached ``me``."""
    for local, remote, _state, uid in tcp_sockets():
        if local == (peer[0], peer[1]) and remote == (me[0], me[1]):
            return uid
    return None
