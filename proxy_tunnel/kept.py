"""This process's side of the keeper (:mod:`proxy_tunnel.keeper`): one per process.

The keeper is started when the first tunnel opens, from the thread that opens it
(its parent-death signal follows that thread: the hub's event loop, which lives as
long as the hub). Each tunnel's command is a :class:`KeptProcess`, which answers
what a tunnel asks of its process (its pid, whether and how it ended, what it
wrote to stderr). Should the keeper itself die, every tree it kept is killed here
and reported ended, and the next tunnel starts a new keeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys

from proxy_tunnel.procs import alive, descendants, signal_all

log = logging.getLogger("proxy_tunnel")

_numbers = itertools.count(1)


class KeptProcess:
    """A command the keeper runs for this process."""

    def __init__(self, keeper: _Keeper, ident: str) -> None:
        self.keeper, self.ident = keeper, ident
        self.pid: int | None = None
        self.returncode: int | None = None
        self.stderr = ""  # the tail of what its tree wrote, once it has ended
        loop = asyncio.get_running_loop()
        self._started, self._ended = loop.create_future(), loop.create_future()

    async def wait(self) -> int:
        """Until the command and its whole tree are gone; its exit code."""
        return await asyncio.shield(self._ended)

    def end(self) -> None:
        """Ask the keeper to end the tree (ssh first); :meth:`wait` says when it is done."""
        if self.returncode is None:
            self.keeper.send({"end": self.ident})

    def _settle(self, future: asyncio.Future[int | None], value: int | None) -> None:
        if not future.done():
            with contextlib.suppress(RuntimeError):  # a test's event loop may be closed
                future.set_result(value)

    def _on_started(self, pid: int) -> None:
        self.pid = pid
        self._settle(self._started, pid)

    def _on_exited(self, code: int, stderr: str) -> None:
        self.returncode, self.stderr = code, stderr
        self._settle(self._started, self.pid)
        self._settle(self._ended, code)


class _Keeper:
    """The keeper process and the JSON lines to and from it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "proxy_tunnel.keeper", "--parent", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.out, self.into = self.process.stdout.fileno(), self.process.stdin.fileno()
        os.set_blocking(self.out, False)
        self.kept: dict[str, KeptProcess] = {}
        self.buffer = b""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lost = False

    def listen(self) -> None:
        """Read the keeper's answers on the running event loop (a test may start another)."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            if self.loop is not None and not self.loop.is_closed():
                with contextlib.suppress(Exception):
                    self.loop.remove_reader(self.out)
            loop.add_reader(self.out, self._readable)
            self.loop = loop

    def send(self, message: dict) -> None:
        if self.lost:
            return
        try:
            os.write(self.into, json.dumps(message).encode() + b"\n")
        except OSError:
            self._lose()

    def _readable(self) -> None:
        try:
            chunk = os.read(self.out, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._lose()
            return
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "started" in message and message["started"] in self.kept:
                self.kept[message["started"]]._on_started(int(message["pid"]))
            elif "exited" in message and message["exited"] in self.kept:
                kept = self.kept.pop(message["exited"])
                kept._on_exited(int(message["code"]), str(message.get("stderr", "")))

    def _lose(self) -> None:
        """The keeper died: nobody ends its trees now but us."""
        global _KEEPER
        self.lost = True
        if _KEEPER is self:
            _KEEPER = None
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.out)
        tops = [k.pid for k in self.kept.values() if k.pid is not None]
        if tops:
            log.error("the tunnel keeper ended; killing the %d tunnels it kept", len(tops))
            signal_all(
                [p for top in tops for p in [top, *descendants(top)] if alive(p)], signal.SIGKILL
            )
        for kept in list(self.kept.values()):
            kept._on_exited(-signal.SIGKILL, "the tunnel keeper ended")
        self.kept.clear()
        self.process.poll()  # collected now if it has ended


_KEEPER: _Keeper | None = None


def keeper_pid() -> int | None:
    """This process's keeper, if one runs (tests, benchmarks)."""
    return _KEEPER.process.pid if _KEEPER is not None else None


async def run_kept(argv: list[str], env: dict[str, str] | None = None) -> KeptProcess:
    """Run ``argv`` under this process's keeper (started if need be) and wait until it
    runs; a command that cannot run comes back ended (127, with the reason as stderr)."""
    global _KEEPER
    if _KEEPER is None or _KEEPER.lost or _KEEPER.process.poll() is not None:
        _KEEPER = _Keeper()
    keeper = _KEEPER
    keeper.listen()
    kept = KeptProcess(keeper, str(next(_numbers)))
    keeper.kept[kept.ident] = kept
    keeper.send({"run": kept.ident, "argv": list(argv), "env": env})
    try:
        await asyncio.shield(kept._started)
    except asyncio.CancelledError:  # it may start all the same: it must not stay
        keeper.send({"end": kept.ident})
        raise
    return kept
