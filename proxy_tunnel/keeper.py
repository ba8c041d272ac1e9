"""The keeper: one process that keeps every tunnel of a hub, and dies with it.

``python -m proxy_tunnel.keeper --parent PID``, started once per process that
opens tunnels (:mod:`proxy_tunnel.kept` is that process's side). It runs each
tunnel's command (``[run-as] condor_ssh_to_job -ssh "ssh ..." JOB``) in a session
of its own and ends it on request, when it ends by itself, or when the parent
dies, always in the order ``condor_ssh_to_job`` needs: first the ``ssh``
processes (the client then removes its session directory and exits), then
whatever is left, then SIGKILL. It is not set-user-ID, so its parent-death
signal survives (unlike one set on ``sudo``); it is a subreaper, so every
process of every tunnel stays below it whatever user or session it runs in.
One keeper for all tunnels: a session costs the hub ``condor_ssh_to_job``, ``ssh``
and the run-as prefix, not a Python process each (issue 27).

The parent speaks JSON lines. In: ``{"run": ID, "argv": [...], "env": {...}}``,
``{"end": ID}``. Out: ``{"started": ID, "pid": PID}``, then ``{"exited": ID,
"code": CODE, "stderr": TAIL}`` once the command's whole tree is gone. End of
input, SIGTERM, SIGHUP or SIGINT: every tree is ended, then the keeper exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from proxy_tunnel.procs import alive, become_subreaper, descendants, die_with_parent, parents

SSH_GRACE = 3.0  # for condor_ssh_to_job to notice its ssh is gone and clean up
TERM_GRACE = 2.0
STDERR_TAIL = 65536  # what is kept of a command's error output
CHECK_EVERY = 5.0  # seconds between looks for orphans while nothing happens


@dataclass
class Kept:
    """One command and its tree: running, or being ended (``phase``, ``until``)."""

    ident: str
    process: subprocess.Popen[bytes]
    stderr: bytearray = field(default_factory=bytearray)
    code: int | None = None
    phase: str = "running"  # running, ssh, term, kill
    until: float = 0.0
    members: set[int] = field(default_factory=set)  # every process seen in its tree


def _is_ssh(pid: int) -> bool:
    with contextlib.suppress(OSError):
        first = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        return Path(first.decode(errors="replace")).name == "ssh"
    return False


class Keeper:
    """The loop: commands in, trees out, every orphan reaped."""

    def __init__(self, out: int) -> None:
        self.out = out
        self.kept: dict[str, Kept] = {}
        self.by_pid: dict[int, Kept] = {}
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopping = False
        self.buffer = b""
        self.parent_gone = False
        self.orphans: dict[int, float] = {}  # pid -> when first seen

    # --- the parent's side -----------------------------------------------

    def _say(self, **message: object) -> None:
        if self.parent_gone:
            return
        try:
            os.write(self.out, json.dumps(message).encode() + b"\n")
        except OSError:  # the parent is gone: end everything
            self.parent_gone = self.stopping = True

    def _read_commands(self) -> None:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.selector.unregister(0)
            self.stopping = True
            return
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._command(json.loads(line))

    def _command(self, message: dict) -> None:
        if "run" in message:
            self._run(str(message["run"]), message["argv"], message.get("env"))
        elif "end" in message and str(message["end"]) in self.kept:
            self._begin_end(self.kept[str(message["end"])], time.monotonic())

    def _run(self, ident: str, argv: list[str], env: dict[str, str] | None) -> None:
        if self.stopping:
            self._say(exited=ident, code=143, stderr="the keeper is ending")
            return
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=env,
            )
        except OSError as err:
            self._say(exited=ident, code=127, stderr=f"cannot run {argv[0]}: {err}")
            return
        kept = Kept(ident, process)
        self.kept[ident], self.by_pid[process.pid] = kept, kept
        os.set_blocking(process.stderr.fileno(), False)
        self.selector.register(process.stderr, selectors.EVENT_READ, kept)
        self._say(started=ident, pid=process.pid)

    # --- trees -----------------------------------------------------------

    def _read_stderr(self, kept: Kept) -> bool:
        """Read what the command's tree wrote; False when nothing more is there now."""
        stream = kept.process.stderr
        try:
            chunk = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.selector.unregister(stream)
            stream.close()
            return False
        kept.stderr += chunk
        del kept.stderr[:-STDERR_TAIL]
        return True

    def _reap(self) -> None:
        """Collect every finished child: a command, or an orphan that came back to us."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for each in self.kept.values():  # a pid reaped may be reused: never signal it
                each.members.discard(pid)
            self.orphans.pop(pid, None)
            kept = self.by_pid.get(pid)
            if kept is not None:
                kept.code = os.waitstatus_to_exitcode(status)
                kept.process.returncode = kept.code
                if kept.phase == "running":  # it ended by itself: the rest of its tree goes
                    self._begin_end(kept, time.monotonic(), ssh_first=False)

    def _begin_end(self, kept: Kept, now: float, ssh_first: bool = True) -> None:
        if kept.phase != "running":
            return
        tree = parents()
        kept.members |= set(descendants(kept.process.pid, tree))
        ssh = [p for p in kept.members if _is_ssh(p) and alive(p)] if ssh_first else []
        if ssh and kept.code is None:
            _signal(ssh, signal.SIGTERM)
            kept.phase, kept.until = "ssh", now + SSH_GRACE
        else:
            self._terminate(kept, now, tree)

    def _living(self, kept: Kept, tree: dict[int, int]) -> list[int]:
        if kept.code is None:
            kept.members |= {kept.process.pid, *descendants(kept.process.pid, tree)}
        return [p for p in kept.members if alive(p)]

    def _terminate(self, kept: Kept, now: float, tree: dict[int, int]) -> None:
        _signal(self._living(kept, tree), signal.SIGTERM)
        kept.phase, kept.until = "term", now + TERM_GRACE

    def _advance(self, now: float) -> None:
        """Move every tree being ended on: the next signal, or its report once it is gone."""
        ending = [k for k in self.kept.values() if k.phase != "running"]
        if not ending:
            return
        tree = parents()
        for kept in ending:
            living = self._living(kept, tree)
            if kept.phase == "ssh" and (kept.code is not None or now >= kept.until):
                self._terminate(kept, now, tree)
            elif kept.phase == "term" and living and now >= kept.until:
                _signal(living, signal.SIGKILL)
                kept.phase, kept.until = "kill", now + TERM_GRACE
            elif kept.phase != "ssh" and (not living or now >= kept.until):
                self._report(kept)

    def _report(self, kept: Kept) -> None:
        self._reap()
        stream = kept.process.stderr
        for _ in range(64):  # what is still in the pipe, bounded
            if stream.closed or not self._read_stderr(kept):
                break
        if not stream.closed:
            self.selector.unregister(stream)
            stream.close()
        del self.kept[kept.ident]
        self.by_pid.pop(kept.process.pid, None)
        code = kept.code if kept.code is not None else -signal.SIGKILL
        self._say(exited=kept.ident, code=code, stderr=kept.stderr.decode(errors="replace"))

    def _look(self, now: float) -> None:
        """Note who is in each running tree; end a process that came back to us from no
        tree still running (its command is gone, or it left its tree): SIGTERM when
        first seen, SIGKILL after the grace. Nothing of a tunnel outlives it."""
        me, tree = os.getpid(), parents()
        known = set()
        for kept in self.kept.values():
            if kept.phase == "running":
                kept.members = {p for p in kept.members if p in tree}
                kept.members |= set(descendants(kept.process.pid, tree))
                known |= kept.members
        found = {p for p, parent in tree.items() if parent == me and p not in self.by_pid}
        found = (found - known) | {p for p in self.orphans if alive(p)}
        for pid in found - set(self.orphans):
            self.orphans[pid] = now
            _signal([pid, *descendants(pid, tree)], signal.SIGTERM)
        for pid, seen in list(self.orphans.items()):
            if pid not in found:
                del self.orphans[pid]
            elif now - seen >= TERM_GRACE:
                _signal([pid, *descendants(pid, tree)], signal.SIGKILL)

    # --- the loop --------------------------------------------------------

    def run(self) -> int:
        def wake(*_: object) -> None:
            pass

        def stop(*_: object) -> None:
            self.stopping = True

        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, wake)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.selector.register(0, selectors.EVENT_READ, "commands")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        last_check = time.monotonic()
        while True:
            now = time.monotonic()
            if self.stopping:
                for kept in list(self.kept.values()):
                    self._begin_end(kept, now)
                self._look(now)
                if not self.kept and not self.orphans:
                    return 0
            busy = self.orphans or any(k.phase != "running" for k in self.kept.values())
            for key, _ in self.selector.select(0.05 if busy else CHECK_EVERY):
                if key.data == "commands":
                    self._read_commands()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        self.wake_r.recv(4096)
                else:
                    self._read_stderr(key.data)
            self._reap()
            now = time.monotonic()
            if busy or now - last_check >= CHECK_EVERY:
                self._look(now)
                last_check = now
            self._advance(now)


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proxy_tunnel.keeper", description=__doc__)
    parser.add_argument("--parent", type=int, required=True, help="end when this process ends")
    args = parser.parse_args(argv)
    die_with_parent(signal.SIGTERM)
    if os.getppid() != args.parent:  # the parent died before we could ask to follow it
        return 143
    become_subreaper()
    out = os.dup(1)  # the parent's pipe; nothing else may write there
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    with contextlib.suppress(KeyboardInterrupt):
        return Keeper(out).run()
    return 130


if __name__ == "__main__":
    sys.exit(main())
