"""``condor_status``: the pool's partitionable slot and a dynamic slot per running job.

``-schedd`` (``-sched``): the schedds' ads instead (``localpool.schedd.schedds``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from localpool.schedd.store import Store
from localpool.tools.query import constrained, parse_options, print_ads


def condor_status(argv: Sequence[str], store: Store) -> int:
    from localpool.negotiator.matchmaker import machine_ad, used_resources

    wants_schedds = any(a.lower() in ("-schedd", "-sched", "-schedd-ads") for a in argv)
    argv = [a for a in argv if a.lower() not in ("-schedd", "-sched", "-schedd-ads")]
    opts = parse_options(argv)
    if wants_schedds:
        return _schedds(opts, store)
    config = store.config()
    running = [ad for ad in store.read().jobs.values() if "LocalpoolStarterPid" in ad]
    parent = machine_ad(config, used_resources(running))
    parent.update(State="Unclaimed", Activity="Idle", NumDynamicSlots=len(running))
    slots = [parent]
    for ad in sorted(running, key=lambda a: a.get("LocalpoolSlotSlotId", 0)):
        slot = dict(parent)
        slot.update(
            Name=ad.get("RemoteHost"),
            SlotType="Dynamic",
            PartitionableSlot=False,
            State="Claimed",
            Activity="Busy",
            Cpus=ad.get("LocalpoolSlotCpus"),
            Memory=ad.get("LocalpoolSlotMemory"),
            Disk=ad.get("LocalpoolSlotDisk"),
            GPUs=ad.get("LocalpoolSlotGPUs"),
            RemoteOwner=f"{ad['Owner']}@{config.host}",
            JobId=f"{ad['ClusterId']}.{ad['ProcId']}",
        )
        slot.pop("NumDynamicSlots", None)
        slots.append(slot)
    try:
        slots = constrained(slots, opts["constraint"])
    except Exception:
        sys.stderr.write("Error: invalid constraint\n")
        return 1
    if opts["mode"] != "table":
        print_ads(slots, opts, sys.stdout.write)
        return 0
    out = [
        "Name                               OpSys      Arch     State     Activity LoadAv "
        "Mem     ActvtyTime",
        "",
    ]
    for s in slots:
        out.append(
            f"{s['Name']:<34} {s['OpSys']:<10} {s['Arch']:<8} {s['State']:<9} "
            f"{s['Activity']:<8} {0:>6.3f} {s['Memory']:>6}  0+00:00:00"
        )
    claimed = len(slots) - 1
    out += [
        "",
        "               Total Owner Claimed Unclaimed Matched Preempting  Drain Backfill BkIdle",
        "",
        f"  X86_64/LINUX {len(slots):>5} {0:>5} {claimed:>7} {1:>9} {0:>7} {0:>10} {0:>6}"
        f" {0:>8} {0:>6}",
        "",
        f"         Total {len(slots):>5} {0:>5} {claimed:>7} {1:>9} {0:>7} {0:>10} {0:>6}"
        f" {0:>8} {0:>6}",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    if config.container_os:
        sys.stdout.write(f"\nContainerOSes offered: {', '.join(config.container_os)}\n")
    return 0


def _schedds(opts: dict, store: Store) -> int:
    from localpool.schedd.schedds import schedd_ads, schedd_table

    try:
        ads = constrained(schedd_ads(store), opts["constraint"])
    except Exception:
        sys.stderr.write("Error: invalid constraint\n")
        return 1
    if opts["mode"] != "table":
        print_ads(ads, opts, sys.stdout.write)
    else:
        sys.stdout.write(schedd_table(ads))
    return 0
