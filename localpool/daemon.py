"""The pool process: the scheduling cycle, and between cycles the tools' requests.

It keeps no state of its own: everything is in the store, and every job that
runs has its own starter process (``localpool.startd.starter``), detached from this
one. Stopping and starting the pool process therefore loses no job: a new
pool process picks the queue up and re-adopts the starters still running
(``localpool.schedd.scheduler``).

It owns the store (root-only files when run as root) and listens on
``pool.sock`` in the pool directory; each ``condor_*`` client's request is
served by a forked child (``localpool.server``), so the loop never waits on
a client. No threads: the accept is part of the loop's ``select``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from localpool.schedd.schedds import all_stores, is_off
from localpool.schedd.scheduler import Scheduler
from localpool.schedd.store import Store


class PoolProcess:
    """One pool process over one store: the scheduling cycle and the tools' requests."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = store.config()
        self.schedulers = [Scheduler(one, self.config) for one in all_stores(store, self.config)]
        for each in self.schedulers:  # one execute point: each schedd sees the others' jobs
            each.peers = [other.store for other in self.schedulers if other is not each]
        self.scheduler = self.schedulers[0]
        self.requests: set[int] = set()  # pids of the children serving clients
        self.stopping = False
        self.listener = listen(store)

    # --- the loop -------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        while not self.stopping:
            started = time.monotonic()
            for scheduler in self.schedulers:
                if is_off(scheduler.store):  # a schedd that does not answer starts nothing
                    scheduler.reap_children()
                    continue
                try:
                    scheduler.cycle()
                except Exception as err:  # keep the pool up; the log says what went wrong
                    print(f"localpool: cycle failed: {err!r}", file=sys.stderr, flush=True)
                scheduler.reap_children()
                scheduler.await_starters()
            self._serve_until(started + self.config.cycle_seconds)
        self.listener.close()

    def _serve_until(self, deadline: float) -> None:
        """Accept clients until the next cycle is due; each request in a child of its own."""
        while not self.stopping:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return
            readable, _, _ = select.select([self.listener], [], [], timeout)
            if readable:
                self._fork_request()
            self._reap_requests()

    def _fork_request(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: serve this client, never return to the loop
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                self.listener.close()
                from localpool.server import serve

                serve(conn, self.store)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        conn.close()
        self.requests.add(pid)

    def _reap_requests(self) -> None:
        for pid in list(self.requests):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.requests.discard(pid)

    def _stop(self, *_: Any) -> None:
        self.stopping = True


def listen(store: Store) -> socket.socket:
    """The pool's socket: in the pool directory, any account may connect."""
    path = store.socket_file
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    here = os.getcwd()
    os.chdir(store.root)  # bind by a short relative name (socket paths are limited)
    try:
        listener.bind(path.name)
    finally:
        os.chdir(here)
    path.chmod(0o666)
    listener.listen(64)
    listener.setblocking(False)
    return listener


def pool_pid(store: Store) -> int | None:
    """The running pool process's pid, or None."""
    try:
        with open(store.pid_file) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return int(f.read().strip() or 0) or None
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
    except (FileNotFoundError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m localpool.daemon POOLDIR``: run the pool process in the foreground."""
    args = argv if argv is not None else sys.argv[1:]
    store = Store(args[0] if args else None)
    for one in all_stores(store) if store.exists() else [store]:
        one.prepare()
    fd = os.open(store.pid_file, os.O_RDWR | os.O_CREAT, 0o600)
    with open(fd, "r+") as pid_file:
        try:
            fcntl.flock(pid_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"localpool: a pool process already runs for {store.root}", file=sys.stderr)
            return 1
        pool = PoolProcess(store)
        # the tools' code is loaded once here, not in every request's child
        import htcondor2  # noqa: F401

        import localpool.server
        import localpool.submit.description
        import localpool.submit.tool
        import localpool.tools.commands  # noqa: F401

        pid_file.seek(0)
        pid_file.truncate()
        pid_file.write(f"{os.getpid()}\n")
        pid_file.flush()
        pool.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
