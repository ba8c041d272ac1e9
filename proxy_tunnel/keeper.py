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

The tunnels' processes run as their users, who are not trusted. So the keeper
signals a process only while it is below the keeper and is the very process it
saw in that tree (same pid and start time: a reused pid is somebody else); a
process that comes back to it from no tree it knows (its command is gone, or it
daemonized before a look) is killed at once; its writes to the parent never
block (a slow reader stalls no tunnel); one tree's trouble is that tree's.

The parent speaks JSON lines. In: ``{"run": ID, "argv": [...], "env": {...}}``,
``{"end": ID}``. Out: ``{"started": ID, "pid": PID, "start": TICKS}``, then
``{"exited": ID, "code": CODE, "stderr": TAIL}`` once the command's whole tree is
gone. End of input, SIGTERM, SIGHUP or SIGINT: every tree is ended, then the
keeper exits (after ``STOP_LIMIT`` whatever is left below it is killed).
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

from proxy_tunnel.procs import (
    Snapshot,
    become_subreaper,
    command_line,
    die_with_parent,
    signal_all,
    start_time,
)

SSH_GRACE = 3.0  # for condor_ssh_to_job to notice its ssh is gone and clean up
TERM_GRACE = 2.0
STOP_LIMIT = SSH_GRACE + 2 * TERM_GRACE + 3.0  # the parent is gone: then nothing stays
STDERR_TAIL = 8192  # what is kept of a command's error output (the caller reads its end)
LOOK_EVERY = 10.0  # seconds between notes of who is in each tree while nothing happens


@dataclass
class Kept:
    """One command and its tree: running, or being ended (``phase``, ``until``)."""

    ident: str
    process: subprocess.Popen[bytes]
    start: int | None
    stderr: bytearray = field(default_factory=bytearray)
    code: int | None = None  # the command's exit, once reaped
    asked: bool = False  # to end
    phase: str = "running"  # running, ssh, term, kill
    until: float = 0.0
    members: dict[int, int] = field(default_factory=dict)  # pid -> start: seen in its tree

    def note(self, snap: Snapshot) -> None:
        """Who is in the tree now (the command's, while it runs, and its descendants)."""
        top = self.process.pid
        if self.code is None and self.start is not None and snap.living(top, self.start):
            for pid in [top, *snap.below(top)]:
                start = snap.start(pid)
                if start is not None:
                    self.members.setdefault(pid, start)
        self.members = {p: s for p, s in self.members.items() if snap.start(p) == s}

    def living(self, snap: Snapshot) -> list[int]:
        return [p for p, s in self.members.items() if snap.living(p, s)]


def _is_ssh(pid: int) -> bool:
    return Path((command_line(pid) or [""])[0]).name == "ssh"


class Keeper:
    """The loop: commands in, trees out, every orphan reaped."""

    def __init__(self, out: int) -> None:
        self.out, self.outbox = out, bytearray()
        self.kept: dict[str, Kept] = {}
        self.by_pid: dict[int, Kept] = {}
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopping: float | None = None  # since when
        self.inbox = b""
        self.parent_gone = False
        self.last_look = 0.0
        self.busy = False  # something to follow closely (a tree ending, an orphan)

    # --- the parent's side -----------------------------------------------

    def _say(self, **message: object) -> None:
        if not self.parent_gone:
            self.outbox += json.dumps(message, ensure_ascii=False).encode() + b"\n"

    def _flush(self) -> None:
        """As much of the outbox as the pipe takes now; the rest when it is writable."""
        while self.outbox and not self.parent_gone:
            try:
                del self.outbox[: os.write(self.out, self.outbox)]
            except BlockingIOError:
                break
            except OSError:  # the parent is gone: end everything
                self.parent_gone = True
                self.outbox.clear()
                self._stop()
        wants = self.out in self.selector.get_map()
        if self.outbox and not wants:
            self.selector.register(self.out, selectors.EVENT_WRITE, "out")
        elif not self.outbox and wants:
            self.selector.unregister(self.out)

    def _read_commands(self) -> None:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.selector.unregister(0)
            self._stop()
            return
        self.inbox += chunk
        *lines, self.inbox = self.inbox.split(b"\n")
        for line in lines:
            try:
                self._command(json.loads(line))
            except Exception as err:  # one bad command is that command's
                print(f"proxy_tunnel.keeper: {err!r} in {line[:200]!r}", file=sys.stderr)

    def _command(self, message: dict) -> None:
        if "run" in message:
            self._run(str(message["run"]), message["argv"], message.get("env"))
        elif "end" in message and str(message["end"]) in self.kept:
            self.kept[str(message["end"])].asked = True

    def _run(self, ident: str, argv: list[str], env: dict[str, str] | None) -> None:
        if self.stopping is not None:
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
        except (OSError, ValueError, TypeError) as err:
            self._say(exited=ident, code=127, stderr=f"cannot run {argv[:1]}: {err}")
            return
        kept = Kept(ident, process, start_time(process.pid))
        self.kept[ident], self.by_pid[process.pid] = kept, kept
        os.set_blocking(process.stderr.fileno(), False)
        self.selector.register(process.stderr, selectors.EVENT_READ, kept)
        self._say(started=ident, pid=process.pid, start=kept.start)

    def _stop(self) -> None:
        if self.stopping is None:
            self.stopping = time.monotonic()

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
            kept = self.by_pid.get(pid)
            if kept is not None:
                kept.code = os.waitstatus_to_exitcode(status)
                kept.process.returncode = kept.code

    def _look(self, snap: Snapshot) -> None:
        """Note who is in each tree; kill at once what came back to us from none."""
        known = set(self.by_pid)
        for kept in self.kept.values():
            kept.note(snap)
            known |= set(kept.members)
        me = os.getpid()
        strays = [p for p in snap.children.get(me, []) if p not in known]
        for pid in strays:  # below us now, so ours: a pid reused is not possible here
            signal_all([pid, *snap.below(pid)], signal.SIGKILL)
        self.busy = self.busy or bool(strays)

    def _step(self, kept: Kept, snap: Snapshot, now: float) -> None:
        """One tree's next move while it ends: ssh first, the rest, SIGKILL, report."""
        living = kept.living(snap)
        if kept.phase == "running":
            if not kept.asked and kept.code is None:
                return
            ssh = [p for p in living if _is_ssh(p)] if kept.code is None else []
            if ssh:
                signal_all(ssh, signal.SIGTERM)
                kept.phase, kept.until = "ssh", now + SSH_GRACE
            else:
                signal_all(living, signal.SIGTERM)
                kept.phase, kept.until = "term", now + TERM_GRACE
        elif kept.phase == "ssh" and (kept.code is not None or now >= kept.until):
            signal_all(living, signal.SIGTERM)
            kept.phase, kept.until = "term", now + TERM_GRACE
        elif kept.phase == "term" and living and now >= kept.until:
            signal_all(living, signal.SIGKILL)
            kept.phase, kept.until = "kill", now + TERM_GRACE
        elif kept.phase in ("term", "kill") and (not living or now >= kept.until):
            self._report(kept)
            return
        self.busy = True

    def _report(self, kept: Kept) -> None:
        stream = kept.process.stderr
        for _ in range(16):  # what is still in the pipe, bounded
            if stream.closed or not self._read_stderr(kept):
                break
        if not stream.closed:
            self.selector.unregister(stream)
            stream.close()
        del self.kept[kept.ident]
        self.by_pid.pop(kept.process.pid, None)
        code = kept.code if kept.code is not None else -signal.SIGKILL
        self._say(exited=kept.ident, code=code, stderr=kept.stderr.decode(errors="replace"))

    # --- the loop --------------------------------------------------------

    def _turn(self, now: float) -> bool:
        """Everything that is due; False once the keeper may exit."""
        self._reap()
        if self.stopping is not None:
            for kept in self.kept.values():
                kept.asked = True
        due = now - self.last_look >= LOOK_EVERY
        moving = any(k.asked or k.code is not None for k in self.kept.values())
        if not (due or moving or self.busy or self.stopping is not None):
            return True
        snap, self.busy = Snapshot(), False
        self._look(snap)  # every tree noted, strays killed
        self.last_look = now
        for kept in list(self.kept.values()):
            self._step(kept, snap, now)
        if self.stopping is None:
            return True
        if not self.kept and not snap.children.get(os.getpid()):
            return False
        if now - self.stopping >= STOP_LIMIT:  # nothing of any tunnel outlives the keeper
            signal_all(snap.below(os.getpid()), signal.SIGKILL)
            return False
        return True

    def run(self) -> int:
        def wake(*_: object) -> None:
            pass

        def stop(*_: object) -> None:
            self._stop()

        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        os.set_blocking(self.out, False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, wake)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.selector.register(0, selectors.EVENT_READ, "commands")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        while True:
            quick = self.busy or self.stopping is not None
            for key, _ in self.selector.select(0.05 if quick else LOOK_EVERY):
                if key.data == "commands":
                    self._read_commands()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        self.wake_r.recv(4096)
                elif isinstance(key.data, Kept):
                    self._read_stderr(key.data)
            more = self._turn(time.monotonic())
            self._flush()
            if not more:
                return 0


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
