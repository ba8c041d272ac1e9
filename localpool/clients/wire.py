"""How a ``condor_*`` client talks to the pool process (standard library only).

One length-prefixed JSON message each way over the pool's Unix socket; the
request carries the caller's stdin, stdout, stderr and current directory as
file descriptors (SCM_RIGHTS). The pool process knows the caller from the
socket (SO_PEERCRED). Without a pool process, the pool's owner may still
read its state through a one-request server of its own (``--direct``).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

SOCKET_NAME = "pool.sock"
HEADER = struct.Struct("!I")
MAX_MESSAGE = 16 * 1024 * 1024
FD_COUNT = 4  # stdin, stdout, stderr, current directory


class NoPool(Exception):
    """No pool process answers at this directory."""


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


def stdio() -> list[int]:
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
        cwd=Path(__file__).resolve().parents[2],  # the directory that holds localpool/
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
            fds = stdio() if own else fds
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
