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


def parents() -> dict[int, int]:
    """pid -> parent pid for every process we can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields start after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        found[int(entry.name)] = int(fields[1])
    return found


def descendants(pid: int, tree: dict[int, int] | None = None) -> list[int]:
    """Every process below ``pid`` (children first), as /proc shows them now (or as
    ``tree``, a :func:`parents` taken once for many looks, showed them)."""
    children: dict[int, list[int]] = {}
    for child, parent in (parents() if tree is None else tree).items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        current = todo.pop(0)
        found.append(current)
        todo.extend(children.get(current, []))
    return found


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
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


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
