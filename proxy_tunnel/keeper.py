"""The keeper of one tunnel: it dies with its parent and takes the whole tunnel along.

``python -m proxy_tunnel.keeper --parent PID [--mark TEXT] -- COMMAND...``

A :class:`~proxy_tunnel.Tunnel` runs ``condor_ssh_to_job`` under this keeper,
in a session of its own. The keeper sets its own parent-death signal (it is
not set-user-ID, so the signal survives, unlike one set on ``sudo``) and
makes itself a subreaper, so every process of the tunnel stays below it
whatever user or session it runs in. On SIGTERM (a teardown, or the hub's
death) or when the command ends, it ends the tree in the order that lets
``condor_ssh_to_job`` clean up after itself: first the ``ssh`` processes (the
client then removes its session directory and exits), then whatever is left,
then SIGKILL. ``--mark`` only labels the keeper's command line, so that a
later hub can find a tunnel of its own that outlived everything else.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from proxy_tunnel.procs import (
    alive,
    become_subreaper,
    command_line,
    descendants,
    die_with_parent,
    signal_all,
)

SSH_GRACE = 3.0  # for condor_ssh_to_job to notice its ssh is gone and clean up
TERM_GRACE = 2.0


class Keeper:
    """Runs the command and ends its tree (reaping every orphan that comes back to us)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.child: subprocess.Popen[bytes] | None = None
        self.code: int | None = None
        self.stopping = False

    def _reap(self) -> None:
        """Collect every finished child: the command and re-parented orphans."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.child is not None and pid == self.child.pid:
                self.code = os.waitstatus_to_exitcode(status)
                self.child.returncode = self.code

    def _wait(self, done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._reap()
            if done():
                return True
            time.sleep(0.05)
        self._reap()
        return done()

    def _living(self) -> list[int]:
        return [pid for pid in descendants(os.getpid()) if alive(pid)]

    def end_tree(self) -> None:
        """ssh first (so condor_ssh_to_job cleans up), then the rest, then SIGKILL."""
        ssh = [p for p in self._living() if Path((command_line(p) or [""])[0]).name == "ssh"]
        signal_all(ssh, signal.SIGTERM)
        if ssh:
            self._wait(lambda: self.code is not None, SSH_GRACE)
        signal_all(self._living(), signal.SIGTERM)
        if not self._wait(lambda: not self._living(), TERM_GRACE):
            signal_all(self._living(), signal.SIGKILL)
            self._wait(lambda: not self._living(), TERM_GRACE)

    def run(self) -> int:
        def stop(*_: object) -> None:
            self.stopping = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)
        try:
            self.child = subprocess.Popen(self.command)
        except OSError as err:
            print(f"proxy_tunnel.keeper: cannot run {self.command[0]}: {err}", file=sys.stderr)
            return 127
        while not self.stopping and self.code is None:
            self._wait(lambda: self.stopping or self.code is not None, 0.5)
        self.end_tree()
        return self.code if self.code is not None else 143


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proxy_tunnel.keeper", description=__doc__)
    parser.add_argument("--parent", type=int, required=True, help="end when this process ends")
    parser.add_argument("--mark", default="", help="a label for finding this tunnel later")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to keep")
    die_with_parent(signal.SIGTERM)
    if os.getppid() != args.parent:  # the parent died before we could ask to follow it
        return 143
    become_subreaper()
    with contextlib.suppress(KeyboardInterrupt):
        return Keeper(command).run()
    return 130


if __name__ == "__main__":
    sys.exit(main())
