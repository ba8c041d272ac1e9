"""The pool process: matchmaking, starting, reaping, policy, and the tools' requests.

It keeps no state of its own: everything is in the store, and every job that
runs has its own starter process (``localpool.starter``), detached from this
one. Stopping and starting the pool process therefore loses no job: a new
pool process picks the queue up and re-adopts the starters still running.

It owns the store (root-only files when run as root) and listens on
``pool.sock`` in the pool directory; each ``condor_*`` client's request is
served by a forked child (``localpool.server``), so the loop never waits on
a client. No threads: the accept is part of the loop's ``select``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localpool import eventlog
from localpool.ads import Ad, Expr, evaluate, is_true
from localpool.matchmaker import machine_ad, matches, requested, used_resources
from localpool.store import PoolConfig, Queue, Store

IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5
STOP_FILE, RESULT_FILE, STARTER_FILE, JOB_PID_FILE = (
    "stop",
    "result.json",
    "starter.json",
    "job.pid",
)
HOLD_BY_USER, HOLD_PERIODIC, HOLD_DURATION = 1, 3, 47
STARTER_TIMEOUT = 3.0  # how long the loop waits for a just-started job's starter


def schedd_address(config: PoolConfig) -> str:
    """The address string the pool's schedd shows in events (shared-port style)."""
    return f"<127.0.0.1:9618?addrs=127.0.0.1-9618&alias={config.host}&noUDP&sock=schedd_localpool>"


def duration(seconds: float) -> str:
    """HTCondor's D+HH:MM:SS."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    return f"{days}+{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def namespaces_available() -> bool:
    """Can this process give jobs a network namespace of their own (root, unshare)?"""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "--net", "--", "true"], capture_output=True, check=False, timeout=10
    )
    return probe.returncode == 0


def use_namespaces(config: PoolConfig) -> bool:
    if config.network_namespaces == "off":
        return False
    available = namespaces_available()
    if config.network_namespaces == "on" and not available:
        raise RuntimeError(
            "network_namespaces = on, but namespaces are not available "
            "(run as root with unshare installed)"
        )
    return available


def starter_alive(store: Store, job_id: str, pid: int) -> bool:
    """Is this pid still the starter of this job (not a recycled pid)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"localpool.starter" in cmdline and job_id.encode() in cmdline


def read_result(store: Store, job_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((store.job_dir(job_id) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


class PoolProcess:
    """One pool process over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = store.config()
        self.namespaces = use_namespaces(self.config)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.requests: set[int] = set()  # pids of the children serving clients
        self.running = True  # any job with a starter (then every cycle looks)
        self.just_started: list[str] = []
        self.last_periodic = 0.0
        self.stopping = False
        self.listener = listen(store)

    # --- the loop -------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        while not self.stopping:
            started = time.monotonic()
            try:
                self.cycle()
            except Exception as err:  # keep the pool up; the log says what went wrong
                print(f"localpool: cycle failed: {err!r}", file=sys.stderr, flush=True)
            self._reap_children()
            self._await_starters()
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

    def _await_starters(self, timeout: float = STARTER_TIMEOUT) -> None:
        """Let jobs started this cycle get running before the next client is answered.

        As a schedd whose shadow has started the job: a client that sees
        ``JobStatus == 2`` finds the job's output files open and its starter
        ready for ``condor_ssh_to_job``.
        """
        deadline = time.monotonic() + timeout
        waiting = set(self.just_started)
        self.just_started.clear()
        while waiting and time.monotonic() < deadline:
            for job_id in list(waiting):
                job_dir = self.store.job_dir(job_id)
                proc = self.children.get(job_id)
                if (
                    (job_dir / STARTER_FILE).exists()
                    or (job_dir / RESULT_FILE).exists()
                    or (proc is not None and proc.poll() is not None)
                ):
                    waiting.discard(job_id)
            if waiting:
                time.sleep(0.01)

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

    def cycle(self) -> None:
        """One pass: reap finished starters, enforce stops and policy, start what fits."""
        now = time.time()
        periodic = now - self.last_periodic >= self.config.periodic_seconds
        # Nothing runs and nobody changed the queue since our last pass: the same
        # idle jobs would fail the same match (1000 of them cost the clients' time).
        if not (periodic or self.running) and self.store.written == self.store.stamp():
            return
        with self.store.update() as queue:
            for job_id, ad in list(queue.jobs.items()):
                if "LocalpoolStarterPid" in ad:
                    self._follow_starter(queue, job_id, ad, now)
                elif ad["JobStatus"] == REMOVED:
                    self._leave_queue(queue, job_id, ad, now)
            if periodic:
                self.last_periodic = now
                for job_id, ad in list(queue.jobs.items()):
                    self._policy(queue, job_id, ad, now)
            self._match(queue, now, record_rejects=periodic)
            self.running = any("LocalpoolStarterPid" in ad for ad in queue.jobs.values())

    # --- running jobs ---------------------------------------------------------

    def _follow_starter(self, queue: Queue, job_id: str, ad: Ad, now: float) -> None:
        result = read_result(self.store, job_id)
        if result is None and starter_alive(self.store, job_id, ad["LocalpoolStarterPid"]):
            stop = ad.get("LocalpoolStop")
            if stop and not ad.get("LocalpoolStopSent"):
                job_dir = self.store.job_dir(job_id)
                (job_dir / STOP_FILE).write_text(stop)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ad["LocalpoolStarterPid"], signal.SIGTERM)
                ad["LocalpoolStopSent"] = now
            return
        self._starter_done(queue, job_id, ad, result or {"lost": True}, now)

    def _starter_done(
        self, queue: Queue, job_id: str, ad: Ad, result: Mapping[str, Any], now: float
    ) -> None:
        stop = ad.pop("LocalpoolStop", None)
        ad.pop("LocalpoolStopSent", None)
        ad.pop("LocalpoolStarterPid", None)
        for key in ("Cpus", "Memory", "Disk", "GPUs", "SlotId"):
            ad.pop(f"LocalpoolSlot{key}", None)
        wall = now - ad.get("JobCurrentStartDate", now)
        ad["RemoteWallClockTime"] = float(ad.get("RemoteWallClockTime", 0.0)) + wall
        ad["CumulativeSlotTime"] = ad["RemoteWallClockTime"]
        shutil.rmtree(self.store.job_dir(job_id), ignore_errors=True)
        if stop is None and ("exit_code" in result or "signal" in result):
            signal_no = result.get("signal")
            ad.update(
                JobStatus=COMPLETED,
                LastJobStatus=RUNNING,
                EnteredCurrentStatus=int(now),
                CompletionDate=int(now),
                ExitBySignal=signal_no is not None,
                ExitCode=result.get("exit_code") if signal_no is None else None,
                ExitStatus=result.get("exit_code") or 0,
            )
            if signal_no is not None:
                ad["ExitSignal"] = signal_no
            ad.pop("RemoteHost", None)
            eventlog.terminated(ad, result.get("exit_code"), signal_no)
            self._leave_queue(queue, job_id, ad, now)
            return
        eventlog.evicted(ad, "Starter lost" if result.get("lost") else "Claim deactivated")
        ad.pop("RemoteHost", None)
        ad["LastVacateTime"] = int(now)
        if stop == "remove" or ad["JobStatus"] == REMOVED:
            self._leave_queue(queue, job_id, ad, now)
        elif stop == "hold" or ad["JobStatus"] == HELD:
            eventlog.held(
                ad,
                ad.get("HoldReason", ""),
                ad.get("HoldReasonCode", 0),
                ad.get("HoldReasonSubCode", 0),
            )
        else:
            ad.update(JobStatus=IDLE, LastJobStatus=RUNNING, EnteredCurrentStatus=int(now))

    def _leave_queue(self, queue: Queue, job_id: str, ad: Ad, now: float) -> None:
        """A completed or removed job moves from the queue to the history."""
        if ad["JobStatus"] == REMOVED:
            eventlog.aborted(ad, ad.get("RemoveReason", "via condor_rm"))
            ad.setdefault("CompletionDate", 0)
        ad["EnteredCurrentStatus"] = int(now)
        self.store.add_history([ad])
        del queue.jobs[job_id]

    # --- policy ---------------------------------------------------------------

    def _policy(self, queue: Queue, job_id: str, ad: Ad, now: float) -> None:
        status = ad["JobStatus"]
        if status in (IDLE, RUNNING):
            for attr, action in (("PeriodicRemove", "remove"), ("PeriodicHold", "hold")):
                expr = ad.get(attr)
                if expr is not None and _evaluates_true(expr, ad):
                    reason = f"The job attribute {attr} expression '{expr}' evaluated to TRUE"
                    if action == "remove":
                        request_remove(ad, reason, now)
                        if "LocalpoolStarterPid" not in ad:
                            self._leave_queue(queue, job_id, ad, now)
                    else:
                        request_hold(ad, _hold_reason(ad, reason), HOLD_PERIODIC, now)
                    return
        if status == RUNNING and "AllowedExecuteDuration" in ad:
            started = ad.get("JobCurrentStartExecutingDate", ad.get("JobCurrentStartDate", now))
            limit = ad["AllowedExecuteDuration"]
            if isinstance(limit, int) and now - started > limit:
                request_hold(
                    ad,
                    f"The job exceeded allowed execute duration of {duration(limit)}",
                    HOLD_DURATION,
                    now,
                )
        if (
            status == HELD
            and "PeriodicRelease" in ad
            and _evaluates_true(ad["PeriodicRelease"], ad)
        ):
            request_release(
                ad,
                "The job attribute PeriodicRelease expression "
                f"'{ad['PeriodicRelease']}' evaluated to TRUE",
                now,
            )

    # --- matchmaking ----------------------------------------------------------

    def _match(self, queue: Queue, now: float, *, record_rejects: bool) -> None:
        running = [ad for ad in queue.jobs.values() if "LocalpoolStarterPid" in ad]
        used = used_resources(running)
        slot_ids = {ad.get("LocalpoolSlotSlotId") for ad in running}
        idle = sorted(
            (
                ad
                for ad in queue.jobs.values()
                if ad["JobStatus"] == IDLE and "LocalpoolStarterPid" not in ad
            ),
            key=lambda a: (-a.get("JobPrio", 0), a["ClusterId"], a["ProcId"]),
        )
        for ad in idle:
            machine = machine_ad(self.config, used)
            try:
                fits = matches(ad, machine)
            except Exception:
                fits = False
            if not fits:
                if record_rejects or "LastRejMatchReason" not in ad:
                    ad.update(LastRejMatchReason="no match found", LastRejMatchTime=int(now))
                continue
            want = requested(ad)
            slot = next(n for n in range(1, 100000) if n not in slot_ids)
            slot_ids.add(slot)
            for key, value in want.items():
                used[key] += value
                ad[f"LocalpoolSlot{key}"] = value
            ad["LocalpoolSlotSlotId"] = slot
            self._start(ad, slot, now)

    def _start(self, ad: Ad, slot: int, now: float) -> None:
        job_id = f"{ad['ClusterId']}.{ad['ProcId']}"
        job_dir = self.store.job_dir(job_id)
        shutil.rmtree(job_dir, ignore_errors=True)
        job_dir.mkdir(parents=True, mode=0o700)
        first = ad.get("JobStartDate") is None
        ad.update(
            JobStatus=RUNNING,
            LastJobStatus=IDLE,
            EnteredCurrentStatus=int(now),
            JobCurrentStartDate=int(now),
            JobCurrentStartExecutingDate=int(now),
            LastMatchTime=int(now),
            NumJobStarts=ad.get("NumJobStarts", 0) + 1,
            JobRunCount=ad.get("JobRunCount", 0) + 1,
            NumJobMatches=ad.get("NumJobMatches", 0) + 1,
            NumShadowStarts=ad.get("NumShadowStarts", 0) + 1,
            CurrentHosts=1,
            RemoteHost=f"slot1_{slot}@{self.config.host}",
            RemoteSlotID=slot,
            CpusProvisioned=ad["LocalpoolSlotCpus"],
            MemoryProvisioned=ad["LocalpoolSlotMemory"],
            DiskProvisioned=ad["LocalpoolSlotDisk"],
            GPUsProvisioned=ad["LocalpoolSlotGPUs"],
            StartdIpAddr=schedd_address(self.config).replace("schedd_", "startd_"),
        )
        if first:
            ad["JobStartDate"] = int(now)
            ad["FirstJobMatchDate"] = int(now)
        command = [
            sys.executable,
            "-m",
            "localpool.starter",
            str(self.store.root),
            job_id,
            "netns" if self.namespaces else "host",
        ]
        if self.namespaces:
            command = ["unshare", "--net", "--", *command]
        log = open(job_dir / "starter.log", "ab")  # noqa: SIM115 (handed to the child)
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
        log.close()
        self.children[job_id] = proc
        self.just_started.append(job_id)
        ad["LocalpoolStarterPid"] = proc.pid

    def _reap_children(self) -> None:
        for job_id, proc in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[job_id]


def _hold_reason(ad: Ad, default: str) -> str:
    """``periodic_hold_reason`` evaluated in the job's ad, else HTCondor's own text."""
    expr = ad.get("PeriodicHoldReason")
    try:
        value = evaluate(str(expr), ad) if isinstance(expr, Expr) else expr
    except Exception:
        return default
    return value if isinstance(value, str) and value else default


def _evaluates_true(expr: Any, ad: Ad) -> bool:
    try:
        value = evaluate(expr, ad) if isinstance(expr, Expr) else expr
    except Exception:
        return False
    return is_true(value)


# --- state changes shared by the commands and the pool process -----------------


def request_hold(ad: Ad, reason: str, code: int, now: float, subcode: int = 0) -> None:
    """Hold a job; a running one is stopped by the pool process, which logs the hold."""
    ad.update(
        JobStatus=HELD,
        LastJobStatus=ad["JobStatus"],
        EnteredCurrentStatus=int(now),
        HoldReason=reason,
        HoldReasonCode=code,
        HoldReasonSubCode=subcode,
        NumSystemHolds=ad.get("NumSystemHolds", 0) + (code != HOLD_BY_USER),
    )
    if "LocalpoolStarterPid" in ad:
        ad["LocalpoolStop"] = "hold"
    else:
        eventlog.held(ad, reason, code, subcode)


def request_release(ad: Ad, reason: str, now: float) -> None:
    for key in ("HoldReason", "HoldReasonCode", "HoldReasonSubCode"):
        ad.pop(key, None)
    ad.update(
        JobStatus=IDLE, LastJobStatus=HELD, EnteredCurrentStatus=int(now), ReleaseReason=reason
    )
    eventlog.released(ad, reason)


def request_remove(ad: Ad, reason: str, now: float) -> None:
    """Mark for removal; the pool process finishes it (after stopping a running one)."""
    ad.update(
        LastJobStatus=ad["JobStatus"],
        JobStatus=REMOVED,
        EnteredCurrentStatus=int(now),
        RemoveReason=reason,
    )
    if "LocalpoolStarterPid" in ad:
        ad["LocalpoolStop"] = "remove"


def request_vacate(ad: Ad) -> None:
    if "LocalpoolStarterPid" in ad:
        ad["LocalpoolStop"] = "vacate"


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
    store.prepare()
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
        import localpool.submit
        import localpool.submit_tool
        import localpool.tools  # noqa: F401

        pid_file.seek(0)
        pid_file.truncate()
        pid_file.write(f"{os.getpid()}\n")
        pid_file.flush()
        pool.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
