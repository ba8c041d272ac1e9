"""The hub's way into one running notebook job: one tunnel generation at a time.

Used by ``start`` (first attach) and by ``poll`` (the hub restarted, the job
runs again after an eviction, the tunnel gave up). The session's local port
``127.0.0.1:L`` (the proxy routes to it) is held by this process from the first
attach to the end of the session, across every tunnel, and relayed to the
current tunnel (:mod:`proxy_tunnel.relay`): no other local account can take it
between two of them. Each generation forwards to the notebook's socket in the
job's rendezvous directory and, in tunnel mode, a socket of its own there back
to the hub API, so it never collides with an earlier generation still alive.
Only a new process (a restarted hub) can find L taken; it then holds any free
port and the caller moves the route. Tunnels a previous hub left behind for
this spawn are found by the rendezvous marker on their command lines and ended
before a new one opens.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

from condorspawner.protocol import Rendezvous, new_generation
from proxy_tunnel import SocketRelay, Tunnel, TunnelError
from proxy_tunnel.procs import alive, processes_carrying, signal_all
from proxy_tunnel.sockets import socket_directory

log = logging.getLogger("condorspawner.attach")


def hub_address(api_url: str) -> tuple[str, int]:
    """(host, port) of the hub's API, for the job's way back (a bind-all address: loopback)."""
    url = urlparse(api_url)
    host = url.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 (a bind-all address, not a bind)
        host = "127.0.0.1"
    return host, url.port or (443 if url.scheme == "https" else 80)


class AttachError(RuntimeError):
    """The job runs but the hub cannot reach its server; the message says why."""


async def end_leftovers(marker: str, uids: set[int], wait: float = 5.0) -> int:
    """End processes of these users carrying this spawn's marker (an earlier hub's
    tunnels: sudo, condor_ssh_to_job, ssh); how many."""
    import signal

    found = processes_carrying(marker, uids)
    if not found:
        return 0
    signal_all(found, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + wait
    while any(alive(p) for p in found) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    signal_all([p for p in found if alive(p)], signal.SIGKILL)
    return len(found)


@dataclass
class TunnelSettings:
    """How the job's tunnel is opened (the adapter's choices)."""

    hub_api: tuple[str, int] | None = None  # (host, port): the job reaches the hub back
    max_restarts: int = 5
    ready_timeout: float = 120.0
    on_give_up: Callable[[str], Awaitable[None]] | None = None


@dataclass
class Attachment:
    """The tunnel to one job's notebook, and which run of the job it reaches."""

    job_id: str
    rendezvous: Rendezvous
    program: Sequence[str]
    hub_api: tuple[str, int] | None  # (host, port) on the hub, when the job uses the tunnel
    env: dict[str, str] = field(default_factory=dict)
    owners: set[int] = field(default_factory=lambda: {os.getuid()})  # whose leftovers to end
    ssh_uid: int | None = None  # the account the tunnel's ssh runs as (default: ours)
    local_port: int = 0
    max_restarts: int = 5
    ready_timeout: float = 120.0
    on_give_up: Callable[[str], Awaitable[None]] | None = None
    config_writer: Callable[[str], Awaitable[str]] | None = None
    tunnel: Tunnel | None = None
    relay: SocketRelay | None = None  # holds local_port for the session's life
    run: int | None = None  # JobCurrentStartDate of the run it reaches
    current: Rendezvous | None = None  # the rendezvous of that run
    swept: bool = False
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def healthy(self) -> bool:
        return self.tunnel is not None and not self.tunnel.failed

    @property
    def busy(self) -> bool:
        """A tunnel is being opened now (by start or another poll)."""
        return self._opening.locked()

    @property
    def failure(self) -> str | None:
        return self.tunnel.failure if self.tunnel is not None else None

    async def hold(self) -> int:
        """Hold the session's local port from now until :meth:`close`; returns it. When
        another process has it (this hub is new), any free port: the route must follow."""
        if self.relay is None:
            relay = SocketRelay(lambda: [])
            try:
                await relay.listen(self.local_port)
            except OSError as err:
                log.warning(
                    "local port %s of %s is taken (%s): the session moves to another",
                    self.local_port,
                    self.job_id,
                    err,
                )
                await relay.listen(0)
            self.relay, self.local_port = relay, relay.port
        return self.local_port

    async def open(self, run: int | None, on_listening: Callable[[], None] | None = None) -> int:
        """A new generation to the job's current run; returns the local port.

        ``on_listening`` is told once, when the forward listens (the server may still
        be starting). One at a time: callers at once each get their own, in turn, and
        only the last stays."""
        async with self._opening:
            return await self._open(run, on_listening)

    async def _open(self, run: int | None, on_listening: Callable[[], None] | None) -> int:
        await self._end_tunnel()
        self.current = self.rendezvous.for_run(run)
        if not self.swept:
            ended = await end_leftovers(self.rendezvous.tag, self.owners)
            if ended:
                log.info("ended %d tunnel processes an earlier hub left for %s", ended, self.job_id)
            self.swept = True
        await self.hold()
        try:
            socket_dir = str(socket_directory(self.ssh_uid))
        except OSError as err:
            raise AttachError(f"No place for the tunnel to {self.job_id}: {err}") from None
        tunnel = Tunnel(
            ssh_uid=self.ssh_uid,
            job_id=self.job_id,
            remote=self.current.notebook_socket,
            local_port=self.local_port,
            relay=self.relay,
            socket_dir=socket_dir,
            fresh_reverse=self._reverse if self.hub_api is not None else None,
            program=self.program,
            env=self.env,
            max_restarts=self.max_restarts,
            ready_timeout=self.ready_timeout,
            ssh_options=(f"-oSetEnv=CONDORSPAWNER_TUNNEL={self.rendezvous.tag}",),
            on_give_up=self.on_give_up,
            config_writer=self.config_writer,
            on_listening=on_listening,
        )
        try:
            await tunnel.start()
        except TunnelError as err:
            raise AttachError(f"Could not reach the notebook in job {self.job_id}: {err}") from None
        self.tunnel, self.run = tunnel, run
        return self.local_port

    def _reverse(self) -> tuple[str, str, int]:
        assert self.hub_api is not None
        host, port = self.hub_api
        return (self.current.hub_socket(new_generation()), host, port)

    async def _end_tunnel(self) -> None:
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            await tunnel.close()

    async def close(self) -> None:
        """The session is over: its tunnel, and then its port."""
        await self._end_tunnel()
        if self.relay is not None:
            relay, self.relay = self.relay, None
            await relay.close()
