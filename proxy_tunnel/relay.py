"""A loopback port this process holds, each connection relayed to a Unix socket.

Both ends of a notebook's tunnel use one: on the hub, the port the proxy routes
to goes on to the socket the tunnel's current ``ssh`` listens on; in the job,
the server's hub-API port goes on to the socket the hub's tunnel forwards back.
A port that ``ssh`` itself listened on would be free each time the ``ssh``
ended, for any local account to take with the user's next request (IPv4 or
IPv6, in the milliseconds before anyone noticed); held here, it stays ours for
as long as its holder wants it, and the sockets behind it sit in directories
no other account can enter.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

COPY_CHUNK = 65536
POLL = 0.1  # seconds between looks for a socket while there is none

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_UCRED = struct.Struct("3i")  # pid, uid, gid


async def open_socket(
    path: str, owner: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the Unix socket at ``path``; with ``owner``, only if a process of
    that uid listens there (``SO_PEERCRED``): the directory's owner may put a symlink
    in the socket's place, and root connecting through it must not reach someone else."""
    reader, writer = await asyncio.open_unix_connection(path)
    if owner is not None:
        sock = writer.get_extra_info("socket")
        _pid, uid, _gid = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        if uid != owner:
            writer.close()
            raise PermissionError(f"{path}: uid {uid} listens there, not {owner}")
    return reader, writer


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(COPY_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class SocketRelay:
    """``127.0.0.1:port`` relayed to the first live socket of ``targets()`` (best first).

    With ``forget_refused``, a socket that refuses is taken as dead (its ``ssh``
    ended) and removed; else its owner tidies up. A connection
    that finds none waits up to ``patience`` seconds for one (a tunnel coming up or
    back), then goes to ``fallback`` if there is one (a page saying why), else is
    closed. ``admit`` decides who may connect at all (on a shared loopback);
    ``owner``, whose process must listen on a target (see :func:`open_socket`).
    """

    def __init__(
        self,
        targets: Callable[[], Sequence[str]],
        *,
        patience: float = 0.0,
        admit: Callable[[asyncio.StreamWriter], bool] | None = None,
        forget_refused: bool = False,
        owner: int | None = None,
    ) -> None:
        self.targets = targets
        self.owner = owner
        self.forget_refused = forget_refused
        self.patience = patience
        self.admit = admit
        self.fallback: Handler | None = None
        self.port = 0
        self._server: asyncio.Server | None = None

    async def listen(self, port: int = 0) -> int:
        """Hold ``port`` (0: any free one); OSError when someone else has it."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Give the port up (the session is over)."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()

    async def connect(
        self, patience: float | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the first live target, waiting up to ``patience`` for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.patience if patience is None else patience)
        while True:
            for path in self.targets():
                try:
                    return await open_socket(path, self.owner)
                except ConnectionRefusedError:
                    if self.forget_refused:
                        Path(path).unlink(missing_ok=True)  # its listener is gone
                except OSError:
                    pass
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(POLL)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.admit is not None and not self.admit(writer):
            writer.close()
            return
        upstream = await self.connect(0 if self.fallback is not None else None)
        if upstream is None:
            if self.fallback is not None:
                await self.fallback(reader, writer)
            else:
                writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
