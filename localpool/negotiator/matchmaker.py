"""The execute point's partitionable slot, and whether a job fits it.

One partitionable slot ``slot1@HOST`` holds the configured CPUs, memory,
disk and GPUs; each running job gets a dynamic slot ``slot1_N@HOST`` carved
from it. A job matches when its Requirements hold against the slot's free
resources and the slot's START holds against the job (an execute point
offering only some ContainerOS values refuses the others).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from localpool.ads import Ad, Expr, evaluate, is_true
from localpool.schedd.store import PoolConfig

START = "(TARGET.ContainerOS =?= undefined || member(TARGET.ContainerOS, MY.ContainerOSes))"


def used_resources(running: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """What the dynamic slots of running jobs hold."""
    used = {"Cpus": 0, "Memory": 0, "Disk": 0, "GPUs": 0}
    for ad in running:
        for key in used:
            used[key] += int(ad.get(f"LocalpoolSlot{key}", 0))
    return used


def machine_ad(config: PoolConfig, used: Mapping[str, int] | None = None) -> Ad:
    """The partitionable slot's ad with what is still free."""
    used = used or {}
    total = {
        "Cpus": config.cpus,
        "Memory": config.memory_mb,
        "Disk": config.disk_mb * 1024,
        "GPUs": config.gpus,
    }
    ad: Ad = {
        "MyType": "Machine",
        "TargetType": "Job",
        "Name": f"slot1@{config.host}",
        "Machine": config.host,
        "Arch": "X86_64",
        "OpSys": "LINUX",
        "OpSysAndVer": "Debian12",
        "FileSystemDomain": config.host,
        "UidDomain": config.host,
        "HasFileTransfer": True,
        "PartitionableSlot": True,
        "SlotType": "Partitionable",
        "SlotID": 1,
        "ContainerOSes": list(config.container_os),
        "HasSingularity": True,
        "START": Expr(START),
        "Requirements": Expr("START"),
        "CondorVersion": "$CondorVersion: 25.0.13 2026-11-21 localpool $",
    }
    for key, value in total.items():
        ad[f"Total{key}"] = value
        ad[key] = value - used.get(key, 0)
    return ad


def requested(job: Mapping[str, Any]) -> dict[str, int]:
    """The job's requests, evaluated (RequestMemory may be an expression)."""
    out = {}
    for key, attr, default in (
        ("Cpus", "RequestCpus", 1),
        ("Memory", "RequestMemory", 128),
        ("Disk", "RequestDisk", 1024),
        ("GPUs", "RequestGPUs", 0),
    ):
        value = job.get(attr, default)
        if isinstance(value, Expr):
            value = evaluate(value, job)
        out[key] = (
            int(value)
            if isinstance(value, int | float) and not isinstance(value, bool)
            else default
        )
    # The startd quantizes dynamic slots (MODIFY_REQUEST_EXPR_*): 128 MB, 1 MB of disk.
    out["Memory"] = max(128, -(-out["Memory"] // 128) * 128)
    out["Disk"] = max(1024, -(-out["Disk"] // 1024) * 1024)
    return out


def matches(job: Mapping[str, Any], machine: Mapping[str, Any]) -> bool:
    """Job Requirements against the machine, and the machine's START against the job."""
    requirements = job.get("Requirements", True)
    job_ok = (
        is_true(evaluate(requirements, job, machine))
        if isinstance(requirements, Expr)
        else is_true(requirements)
    )
    return job_ok and is_true(evaluate(START, machine, job))
