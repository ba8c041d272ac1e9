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

from proxy_tunnel.procs import Snapshot, signal_all

log = logging.getLogger("proxy_tunnel")

_numbers = itertools.count(1)
STARTED_WITHIN = 30.0  # seconds: the keeper starts a command at once


class KeptProcess:
    """A command the keeper runs for this process."""

    def __init__(self, keeper: _Keeper, ident: str) -> None:
        self.keeper, self.ident = keeper, ident
        self.pid: int | None = None
        self.start: int | None = None  # the command's start time: with pid, who it is
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

    def _on_started(self, pid: int, start: int | None) -> None:
        self.pid, self.start = pid, start
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
            start_new_session=True,  # a terminal's ^C or hang-up is not the hub's death
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
        """One line to the keeper, whole (the keeper reads at once: this never waits long)."""
        data = memoryview(json.dumps(message).encode() + b"\n")
        while data and not self.lost:
            try:
                data = data[os.write(self.into, data) :]
            except InterruptedError:
                continue
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
            try:
                message = json.loads(line)
            except ValueError:
                log.error("the tunnel keeper said something unreadable: %r", line[:200])
                continue
            if "started" in message and message["started"] in self.kept:
                kept = self.kept[message["started"]]
                kept._on_started(int(message["pid"]), message.get("start"))
            elif "exited" in message and message["exited"] in self.kept:
                kept = self.kept.pop(message["exited"])
                kept._on_exited(int(message["code"]), str(message.get("stderr", "")))

    def _lose(self) -> None:
        """The keeper died: nobody ends its trees now but us. Its commands are init's now,
        still running: each is killed with what is below it, if it is still the very
        process it was (same start time: a pid may be reused)."""
        global _KEEPER
        self.lost = True
        if _KEEPER is self:
            _KEEPER = None
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.out)
        snap = Snapshot()
        tops = [
            k.pid for k in self.kept.values() if k.pid and k.start and snap.living(k.pid, k.start)
        ]
        if self.kept:
            log.error("the tunnel keeper ended; killing the %d tunnels it kept", len(tops))
        signal_all([p for top in tops for p in [top, *snap.below(top)]], signal.SIGKILL)
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
        await asyncio.wait_for(asyncio.shield(kept._started), STARTED_WITHIN)
    except TimeoutError:  # the keeper is stuck: the caller sees a command that ended
        keeper.send({"end": kept.ident})
        kept._on_exited(
            -signal.SIGKILL, f"the tunnel keeper did not start it in {STARTED_WITHIN} s"
        )
    except asyncio.CancelledError:  # it may start all the same: it must not stay
        keeper.send({"end": kept.ident})
        raise
    return kept
