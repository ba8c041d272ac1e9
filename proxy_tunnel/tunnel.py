"""A supervised port forward into an HTCondor job through ``condor_ssh_to_job``.

``condor_ssh_to_job -ssh "ssh -N -L SOCK:TARGET [-R SOURCE:HOST:PORT] ..." JOB``
reaches the job over CCB / shared port, so neither side needs an inbound
path to the other. TARGET is a port on the job's loopback or, better, a Unix
socket in a directory only the job's owner can enter (no other user's job can
answer there); SOURCE likewise. SOCK is a Unix socket of this generation in a
private directory on this host (:mod:`proxy_tunnel.sockets`); the local port
``127.0.0.1:L`` the proxy routes to is held by this process for the tunnel's
whole life and relayed to SOCK (:mod:`proxy_tunnel.relay`), so no other local
account can take L while ``ssh`` is restarted. The tunnel counts as up only
when a request through SOCK is answered by the server inside the job; when the
forward drops it is started again with backoff, at most ``max_restarts`` times
in ``restart_window``. Every forward of this process runs under its one keeper
(:mod:`proxy_tunnel.keeper`), which ends a forward's whole tree, whatever the
run-as prefix (``sudo``) did to sessions and parent-death signals, when the
tunnel is closed or the process that opened it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from proxy_tunnel.kept import KeptProcess, run_kept
from proxy_tunnel.relay import SocketRelay, open_socket
from proxy_tunnel.sockets import socket_directory

log = logging.getLogger("proxy_tunnel")

RETRY_MARK = "Use -auto-retry"
# The schedd says "retry" until the starter's first update (seconds after the job runs):
# asked again at this steady pace, the tunnel starts within it of the moment it can,
# where a backoff would overshoot (condor_ssh_to_job's own -auto-retry waits 5 s)
RETRY_EVERY = 0.5
ENDED_WITHIN = 15.0  # the keeper ends a tree within 7 s (proxy_tunnel.keeper)
HOLD_WHILE_DOWN = 15.0  # seconds a request waits for a dropped forward to come back


class TunnelError(RuntimeError):
    """The tunnel could not be made, or gave up; the message says why."""


class LocalPortTaken(TunnelError):
    """Something else holds the tunnel's local port: only a new port helps."""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different ports nobody listens on right now (the kernel's choice).

    All are held until all are picked: the kernel picks each at random, so ports picked
    one by one may repeat."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            s = held.enter_context(socket.socket())
            s.bind((host, 0))
            ports.append(s.getsockname()[1])
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    return free_ports(1, host)[0]


async def answers_http(where: int | str, timeout: float = 2.0, owner: int | None = None) -> bool:
    """Does something answer HTTP on 127.0.0.1:``where`` (a port) or at ``where`` (a Unix
    socket, listened on by ``owner``'s process if given), i.e. does the forward reach a
    server?"""
    try:
        if isinstance(where, str):
            opening = open_socket(where, owner)
        else:
            opening = asyncio.open_connection("127.0.0.1", where)
        reader, writer = await asyncio.wait_for(opening, timeout)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"HEAD / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.read(5), timeout)
        return first.startswith(b"HTTP/")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def forward_end(where: int | str) -> str:
    """One end of a forward on the job's side: a loopback port or a Unix socket path."""
    if isinstance(where, int) and not isinstance(where, bool):
        if not 1 <= where <= 65535:
            raise ValueError(f"{where} is not a port")
        return f"127.0.0.1:{where}"
    if (
        not isinstance(where, str)
        or not where.startswith("/")
        or any(c.isspace() or c in ":'\"\\" for c in where)
    ):
        raise ValueError(f"{where!r} is neither a port nor a plain socket path")
    return where


@dataclass
class Tunnel:
    """Forward 127.0.0.1:``local_port`` here to ``remote`` in ``job_id``.

    ``remote`` is a port on the job's loopback or a Unix socket path in the job.
    ``reverse`` = (Q, host, port) also forwards Q in the job (a port or a socket
    path) back to host:port here (the notebook's way to the hub API).
    ``program`` is how to run condor_ssh_to_job: a run-as-user prefix and schedd
    options may come with it (``["sudo", "-n", "-u", "alice", "condor_ssh_to_job"]``).
    ``socket_dir`` is where ssh, as the account ``program`` runs as, listens: only
    that account may enter it (:func:`proxy_tunnel.sockets.socket_directory`).
    ``relay`` holds the local port; given one, it outlives the tunnel (the session's
    port across tunnels), else the tunnel holds ``local_port`` itself until closed.
    ``fresh_reverse``, when given, makes a new ``reverse`` for every (re)start:
    a socket path per generation never collides with one an ended ssh left.
    """

    job_id: str
    remote: int | str
    local_port: int = 0
    reverse: tuple[int | str, str, int] | None = None
    program: Sequence[str] = ("condor_ssh_to_job",)
    env: dict[str, str] | None = None
    server_alive_interval: int = 15
    server_alive_count: int = 3
    ready_timeout: float = 60.0
    max_restarts: int = 5  # drops within restart_window before the supervisor gives up
    restart_window: float = 600.0
    ssh_options: Sequence[str] = ()
    socket_dir: str | None = None
    ssh_uid: int | None = None  # the account ``program`` runs ssh as (default: ours)
    relay: SocketRelay | None = None
    on_give_up: Callable[[str], Awaitable[None]] | None = None  # when the supervisor stops
    # called once, at the first start, when the forward listens (ssh is in; the server may
    # still be starting); never at the supervisor's restarts
    on_listening: Callable[[], None] | None = None
    # writes the ssh_config text where the tunnel's ssh (as the user) reads it; returns the
    # path: the forwards (with the job's directory names) then stay off every command line
    config_writer: Callable[[str], Awaitable[str]] | None = None
    _config_path: str | None = field(default=None, repr=False)
    fresh_reverse: Callable[[], tuple[int | str, str, int]] | None = None
    _process: KeptProcess | None = field(default=None, repr=False)
    _supervisor: asyncio.Task[None] | None = field(default=None, repr=False)
    _closing: bool = field(default=False, repr=False)
    _own_relay: bool = field(default=False, repr=False)
    _drops: list[float] = field(default_factory=list, repr=False)
    forward: str | None = None  # this generation's socket, where ssh listens
    restarts: int = 0
    failure: str | None = None

    # --- the command --------------------------------------------------------

    def _forward_socket(self) -> str:
        if self.forward is None:
            if self.socket_dir is None:
                self.socket_dir = str(socket_directory(self.ssh_uid))
            self.forward = f"{self.socket_dir}/fwd-{os.urandom(8).hex()}.sock"
        return self.forward

    def ssh_config(self) -> str:
        """The forwards and options as an ssh_config file (see ``config_writer``)."""
        local = forward_end(self._forward_socket())
        lines = [f"LocalForward {local} {forward_end(self.remote)}"]
        if self.reverse is not None:
            q, host, port = self.reverse
            lines.append(f"RemoteForward {forward_end(q)} {host}:{int(port)}")
        lines += [
            "ExitOnForwardFailure yes",
            f"ServerAliveInterval {self.server_alive_interval}",
            f"ServerAliveCountMax {self.server_alive_count}",
        ]
        return "\n".join(lines) + "\n"

    def ssh_command(self) -> str:
        if self._config_path is not None:  # the forwards stay off every command line
            return " ".join(["ssh", "-N", "-F", self._config_path, *self.ssh_options])
        local = forward_end(self._forward_socket())
        parts = ["ssh", "-N", "-L", f"{local}:{forward_end(self.remote)}"]
        if self.reverse is not None:
            q, host, port = self.reverse
            parts += ["-R", f"{forward_end(q)}:{host}:{int(port)}"]
        parts += [
            "-oExitOnForwardFailure=yes",
            f"-oServerAliveInterval={self.server_alive_interval}",
            f"-oServerAliveCountMax={self.server_alive_count}",
            *self.ssh_options,
        ]
        return " ".join(parts)

    def command(self) -> list[str]:
        """The argument list the keeper runs: PROGRAM -ssh "ssh ..." JOB."""
        return [*self.program, "-ssh", self.ssh_command(), self.job_id]

    # --- life cycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Hold the local port, start the forward and wait until it reaches the server."""
        self._closing = False
        await self._hold_port()
        try:
            await self._open_until_ready(self.ready_timeout)
        except BaseException:  # cancelled too: no process, no socket left behind
            await self._terminate()
            await self._let_go()
            raise
        self.on_listening = None  # the supervisor's restarts are not starts
        self._supervisor = asyncio.create_task(self._supervise())

    async def _hold_port(self) -> None:
        if self.relay is None:
            self.relay, self._own_relay = SocketRelay(lambda: []), True
        try:
            self.local_port = await self.relay.listen(self.local_port)
        except OSError as err:
            raise LocalPortTaken(f"local port {self.local_port} is taken ({err})") from None
        self.relay.targets = self._targets
        self.relay.owner = self._ssh_uid
        self.relay.patience = HOLD_WHILE_DOWN

    @property
    def _ssh_uid(self) -> int:
        return os.geteuid() if self.ssh_uid is None else self.ssh_uid

    def _targets(self) -> list[str]:
        """Where the held port's connections go: this generation's socket, while alive."""
        if self.failure is not None or self.forward is None or not self.running:
            return []
        return [self.forward]

    async def _spawn(self) -> KeptProcess:
        self._discard_forward()  # a new generation: a new socket, never an old one's
        if self.fresh_reverse is not None:
            self.reverse = self.fresh_reverse()
        if self.config_writer is not None:
            try:
                path = await self.config_writer(self.ssh_config())
                self._config_path = forward_end(path)  # a plain absolute path, nothing more
            except Exception as err:
                log.warning(
                    "tunnel to %s: no ssh_config file (%s); forwards inline", self.job_id, err
                )
                self._config_path = None
        self._forward_socket()
        return await run_kept(self.command(), {**os.environ, **(self.env or {})})

    def _discard_forward(self) -> None:
        if self.forward is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.forward)
            self.forward = None

    async def _open_until_ready(self, timeout: float) -> None:
        """(Re)start the process, retrying the schedd's early "retry" answers, until ready."""
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        delay = 0.25
        announce = self.on_listening
        while time.monotonic() < deadline:
            self._process = await self._spawn()
            while time.monotonic() < deadline and self._process.returncode is None:
                listening = self.forward is not None and os.path.exists(self.forward)
                if listening and announce is not None:
                    announce()
                    announce = None
                ready = listening and await answers_http(self.forward, 1.0, self._ssh_uid)
                if ready:
                    log.info("tunnel to %s up on 127.0.0.1:%s", self.job_id, self.local_port)
                    return
                await asyncio.sleep(0.1)
            if self._process.returncode is None:
                break
            stderr = self._process.stderr.strip()
            last_error = stderr.splitlines()[-1] if stderr else f"exit {self._process.returncode}"
            if "Unable to fetch job ad" in stderr:
                raise TunnelError(f"job {self.job_id} is no longer in the queue")
            if RETRY_MARK in stderr:
                await asyncio.sleep(RETRY_EVERY)
            else:
                await asyncio.sleep(delay * 2)
                delay = min(delay * 2, 2.0)
        await self._terminate()
        raise TunnelError(
            f"tunnel to job {self.job_id} not ready within {timeout:g} s (last: {last_error})"
        )

    def _dropped_too_often(self) -> bool:
        """One more drop than ``max_restarts`` within ``restart_window``: the forward keeps
        failing once up (each restart alone succeeds), so restarting forever helps nobody."""
        now = time.monotonic()
        self._drops = [t for t in self._drops if now - t < self.restart_window] + [now]
        return len(self._drops) > self.max_restarts

    async def _give_up(self, why: str) -> None:
        self.failure = why
        if self.relay is not None:
            self.relay.patience = 0  # nothing to wait for
        log.error("giving up on the tunnel to %s: %s", self.job_id, why)
        if self.on_give_up is not None:
            await self.on_give_up(self.failure)

    async def _supervise(self) -> None:
        """Restart the forward when it drops, with backoff, until closed or out of tries."""
        while not self._closing:
            assert self._process is not None
            await self._process.wait()
            if self._closing:
                return
            self.restarts += 1
            log.warning(
                "tunnel to %s dropped (exit %s); restart %d (at most %d in %g s)",
                self.job_id,
                self._process.returncode,
                self.restarts,
                self.max_restarts,
                self.restart_window,
            )
            if self._dropped_too_often():
                minutes = self.restart_window / 60
                await self._give_up(f"it dropped {len(self._drops)} times in {minutes:g} min")
                return
            failures = 0
            while not self._closing:
                try:
                    await self._open_until_ready(min(self.ready_timeout, 30.0))
                    break
                except TunnelError as err:
                    failures += 1
                    final = "no longer in the queue" in str(err)
                    if failures >= self.max_restarts or final:
                        await self._give_up(str(err))
                        return
                    await asyncio.sleep(min(2.0**failures * 0.25, 5.0))

    @property
    def failed(self) -> bool:
        return self.failure is not None

    async def _terminate(self) -> None:
        """Ask the keeper to end the tree (it alone signals the tunnel's processes: it
        knows who they are) and wait for it, a bounded time."""
        proc = self._process
        if proc is None or proc.returncode is not None:
            return
        proc.end()
        try:
            await asyncio.wait_for(proc.wait(), ENDED_WITHIN)
        except TimeoutError:
            log.error("tunnel to %s: the keeper did not end it in %g s", self.job_id, ENDED_WITHIN)

    async def _let_go(self) -> None:
        """No more traffic through this tunnel; the port goes too when it is ours alone."""
        if self.relay is not None and self.relay.targets == self._targets:
            self.relay.targets = lambda: []
        if self._own_relay and self.relay is not None:
            await self.relay.close()
        self._discard_forward()

    async def close(self) -> None:
        """Stop supervising; the keeper ends the tunnel's tree (what it cannot, we kill)."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._terminate()
        await self._let_go()
