"""The pool process's scheduling cycle: starters followed, policy applied, idle jobs matched.

Each running job has a starter of its own (``python -m localpool.startd.starter``,
detached, in a network namespace of its own when the pool has them); a cycle
reaps the starters that ended, stops those a tool asked to stop, applies the
periodic policy and starts what fits the slot. Everything is in the store,
so a new pool process re-adopts the starters an earlier one left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localpool.ads import Ad
from localpool.negotiator.matchmaker import machine_ad, matches, requested, used_resources
from localpool.schedd import eventlog, policy
from localpool.schedd.jobstate import (
    COMPLETED,
    HELD,
    IDLE,
    REMOVED,
    RESULT_FILE,
    RUNNING,
    STARTER_FILE,
    STOP_FILE,
    schedd_address,
    shadow_spawned,
)
from localpool.schedd.store import PoolConfig, Queue, Store

SCHEDULER_UNIVERSE = 7  # DAGMan's universe: the schedd runs it on the access point
STARTER_TIMEOUT = 3.0  # how long the loop waits for a just-started job's starter


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
    return b"localpool.startd.starter" in cmdline and job_id.encode() in cmdline


def read_result(store: Store, job_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((store.job_dir(job_id) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


class Scheduler:
    """The pool process's jobs: their starters, their policy, and matching idle jobs to the slot."""

    def __init__(self, store: Store, config: PoolConfig) -> None:
        self.store = store
        self.config = config
        self.namespaces = use_namespaces(config)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.running = True  # any job with a starter (then every cycle looks)
        self.just_started: list[str] = []
        self.last_periodic = 0.0
        self.peers: list[Store] = []  # the pool's other schedds: one execute point for all

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
                    if ad.get("LocalpoolShadowDue", now) <= now:
                        shadow_spawned(ad)
                    self._follow_starter(queue, job_id, ad, now)
                elif ad["JobStatus"] == REMOVED:
                    self._leave_queue(queue, job_id, ad, now)
            if periodic:
                self.last_periodic = now
                for job_id, ad in list(queue.jobs.items()):
                    if policy.apply(ad, now):
                        self._leave_queue(queue, job_id, ad, now)
            self._match(queue, now, record_rejects=periodic)
            self.running = any("LocalpoolStarterPid" in ad for ad in queue.jobs.values())

    def await_starters(self, timeout: float = STARTER_TIMEOUT) -> None:
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

    def reap_children(self) -> None:
        for job_id, proc in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[job_id]

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
        shadow_spawned(ad)
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

    # --- matchmaking ----------------------------------------------------------

    def _match(self, queue: Queue, now: float, *, record_rejects: bool) -> None:
        running = [ad for ad in queue.jobs.values() if "LocalpoolStarterPid" in ad]
        for peer in self.peers:
            running += [ad for ad in peer.read().jobs.values() if "LocalpoolStarterPid" in ad]
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
            if ad.get("JobUniverse") == SCHEDULER_UNIVERSE:  # runs on the access point: no slot
                want = dict.fromkeys(("Cpus", "Memory", "Disk", "GPUs"), 0)
            else:
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
        isolated = self.namespaces and ad.get("JobUniverse") != SCHEDULER_UNIVERSE
        ad.update(
            JobStatus=RUNNING,
            LastJobStatus=IDLE,
            EnteredCurrentStatus=int(now),
            LocalpoolRunStart=int(now),  # the dates follow when the "shadow" spawns
            LocalpoolShadowDue=now + self.config.shadow_delay,
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
            ad["FirstJobMatchDate"] = int(now)
        command = [
            sys.executable,
            "-m",
            "localpool.startd.starter",
            str(self.store.qdir),
            job_id,
            "netns" if isolated else "host",
        ]
        if isolated:
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
