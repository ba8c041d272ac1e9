"""One request of a ``condor_*`` client, served in a child of the pool process.

The child learns the caller from the socket (SO_PEERCRED: uid -> account,
the role of HTCondor's FS authentication), takes the caller's stdin,
stdout, stderr and current directory (passed as descriptors) as its own, and
runs the command with the caller as "me", so outputs are those of the tools
themselves. ``python -m localpool.server --direct POOLDIR FD`` serves one
request in-process, for the pool's owner while no pool process runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import struct
import sys
import traceback
from typing import Any

from localpool.clients.wire import FD_COUNT, recv_message, send_message
from localpool.schedd.store import Store
from localpool.security import privs
from localpool.security.privs import Account

_CRED = struct.Struct("3i")


def peer(conn: socket.socket) -> Account:
    """The account of the process at the other end of a Unix socket."""
    _pid, uid, _gid = _CRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    )
    return privs.account_of_uid(uid)


def _take_stdio(fds: list[int]) -> None:
    """The caller's stdio and directory become ours (fds 0-2, cwd, fresh text streams)."""
    for target, fd in zip((0, 1, 2), fds[:3], strict=True):
        os.dup2(fd, target)
    os.fchdir(fds[3])
    for fd in fds:
        os.close(fd)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", line_buffering=True
    )


def dispatch(
    message: dict[str, Any], store: Store, caller: Account, conn: socket.socket
) -> dict[str, Any]:
    from localpool.security.tokens import NETNS_ENV, peer_netns

    op = message.get("op")
    env = dict(message.get("env") or {})
    env[NETNS_ENV] = peer_netns(conn)  # the pool's own look, not the client's word
    if op == "tool":
        from localpool.tools.commands import run

        rc, more = run(message["argv"], store, caller, env)
        return {"rc": rc, **more}
    if op == "ssh_info":  # the schedd's check; ssh_proxy then needs the ticket it gives
        from localpool.startd.sshd import ssh_info

        job, retry = str(message["job"]), bool(message.get("auto_retry"))
        return ssh_info(store, caller, job, retry, env)
    if op == "ssh_proxy":
        from localpool.startd.sshd import serve_proxy

        return serve_proxy(store, caller, message, conn)
    sys.stderr.write(f"localpool: unknown request {op!r}\n")
    return {"rc": 1}


def serve(conn: socket.socket, store: Store) -> None:
    """Serve one connection to the end (the caller gets ``{"rc": N, ...}``)."""
    caller = peer(conn)
    message, fds = recv_message(conn, FD_COUNT)
    if message is None or len(fds) != FD_COUNT:
        for fd in fds:
            os.close(fd)
        return
    log = os.dup(2)
    _take_stdio(fds)
    os.umask(int(message.get("umask", 0o022)) & 0o777)
    try:
        if os.geteuid() != 0 and caller.uid != os.geteuid():
            sys.stderr.write(
                f"localpool: this pool runs as uid {os.geteuid()}; "
                f"{caller.name} cannot use it (start it as root for several users)\n"
            )
            reply: dict[str, Any] = {"rc": 1}
        else:
            if os.geteuid() == 0:
                privs.adopt_groups(caller)
            reply = dispatch(message, store, caller, conn)
    except BrokenPipeError:
        reply = {"rc": 1}
    except Exception:
        os.write(log, traceback.format_exc().encode())
        sys.stderr.write("localpool: internal error (see the pool's log)\n")
        reply = {"rc": 1}
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    with contextlib.suppress(OSError):
        send_message(conn, reply)


def main(argv: list[str] | None = None) -> int:
    """``--direct POOLDIR FD``: serve the request on FD in this process."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "--direct":
        sys.stderr.write("usage: python -m localpool.server --direct POOLDIR FD\n")
        return 2
    conn = socket.socket(fileno=int(args[2]))
    with conn:
        serve(conn, Store(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
