"""Several schedds in one pool: their names, addresses, ads, and ``-name`` on the tools.

``localpool start --schedds N`` runs N access points in one pool process,
each with its own job ids, queue and history (``Store(root, k)``). With one
schedd its name is the host's, as on the recorded pool; with several they are
``schedd1@host``, ``schedd2@host``, ... (HTCondor names a ``SCHEDD_NAME``
without ``@`` so), and the tools without ``-name`` talk to the first (the
"local" schedd). ``localpool schedd-off NAME`` makes one schedd stop
answering, as a hung or unreachable access point: its ad stays in the
collector, its jobs keep running, every tool that asks it fails with
HTCondor's connection error, and it starts no new job until ``schedd-on``.

The messages for a name the collector does not know and for a schedd that
does not answer are those of HTCondor's tools (their source; see
``tests/data/htcondor/README.md``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

from localpool.ads import Ad
from localpool.schedd.jobstate import HELD, IDLE, REMOVED, RUNNING
from localpool.schedd.store import PoolConfig, Store

OFF_FILE = "schedd.off"
NAMED_TOOLS = (
    "condor_q",
    "condor_history",
    "condor_submit",
    "condor_rm",
    "condor_hold",
    "condor_release",
    "condor_vacate_job",
    "condor_qedit",
    "condor_token_fetch",
)


class ScheddError(Exception):
    """A tool cannot reach the schedd it was asked for: its text for stderr, exit 1."""


def names(config: PoolConfig) -> list[str]:
    """Each schedd's ``Name``, in order (index 1 first)."""
    if config.schedds <= 1:
        return [config.host]
    return [f"schedd{k}@{config.host}" for k in range(1, config.schedds + 1)]


def name_of(store: Store, config: PoolConfig | None = None) -> str:
    config = config or store.config()
    return names(config)[store.schedd - 1] if store.schedd <= config.schedds else config.host


def address(config: PoolConfig, index: int = 1) -> str:
    """The schedd's sinful string (shared port; one socket name per schedd)."""
    sock = "schedd_localpool" if index == 1 else f"schedd{index}_localpool"
    return f"<127.0.0.1:9618?addrs=127.0.0.1-9618&alias={config.host}&noUDP&sock={sock}>"


def all_stores(store: Store, config: PoolConfig | None = None) -> list[Store]:
    config = config or store.config()
    return [store.for_schedd(k) for k in range(1, max(config.schedds, 1) + 1)]


def index_of(config: PoolConfig, name: str) -> int | None:
    """The schedd a ``-name`` means: its full name, or the part before ``@``."""
    for k, full in enumerate(names(config), start=1):
        if name in (full, full.split("@")[0]) or (k == 1 and name == config.host):
            return k
    return None


def is_off(store: Store) -> bool:
    return (store.qdir / OFF_FILE).exists()


def set_off(store: Store, off: bool) -> None:
    """``localpool schedd-off`` / ``schedd-on``: the schedd stops (starts) answering."""
    path = store.qdir / OFF_FILE
    if off:
        store.qdir.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{int(time.time())}\n")
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def split_name(tool: str, args: Sequence[str]) -> tuple[str | None, list[str]]:
    """``-name NAME`` taken out of a tool's arguments (``-n``/``-na`` prefixes too)."""
    rest: list[str] = []
    name = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-queue" and tool == "condor_submit":  # the rest is the queue statement
            rest.extend(args[i:])
            break
        if arg.lower() in ("-name", "-nam", "-na", "-n") and i + 1 < len(args):
            name = args[i + 1]
            i += 2
            continue
        rest.append(arg)
        i += 1
    return name, rest


def unknown_name(tool: str, name: str) -> str:
    """What each tool prints when the collector has no schedd of that name."""
    if tool == "condor_q":
        return "Error: Collector has no record of schedd/submitter\n"
    if tool == "condor_submit":
        return f"\nERROR: Can't find address of schedd {name}\n"
    if tool == "condor_history":
        return f"Unable to locate remote schedd (name={name}, pool=).\n"
    if tool == "condor_qedit":
        return f"condor_qedit: No such schedd named {name} in local pool\n"
    if tool == "condor_ssh_to_job":
        return f"No such schedd named {name} in local pool\n"
    if tool == "condor_token_fetch":
        return f"ERROR: couldn't locate daemon {name}!\n"
    return f"Error: cannot get address of schedd {name}\n"


def refused(tool: str, name: str, addr: str, detail: str, named: bool) -> str:
    """A schedd that did not let the tool in: its lead line, then HTCondor's error stack."""
    if tool == "condor_q":
        return f"\n-- Failed to fetch ads from: {addr} : {name}\n{detail}\n"
    if tool == "condor_submit":
        which = f"queue manager {name}" if named else "local queue manager"
        return f"\nERROR: Failed to connect to {which}\n{detail}\n"
    if tool == "condor_history":
        return (
            "Unable to send history command to remote schedd;\n"
            "Typically, either the schedd is not responding, does not authorize you, "
            "or does not support remote history.\n"
        )
    if tool == "condor_qedit":
        return f"Failed to connect to queue manager {addr}\n{detail}\n"
    if tool == "condor_status":
        return f"Error: communication error\n{detail}\n"
    if tool == "condor_token_fetch":
        return f"Failed to request a session token: {detail}\n"
    return f"{detail}\n"


def not_answering(addr: str) -> str:
    return f"CEDAR:6001:Failed to connect to {addr}"


def resolve(
    tool: str, args: Sequence[str], store: Store, local: str | None = None
) -> tuple[Store, list[str], bool]:
    """The store of the schedd a tool asks (``-name``), the other arguments, and if named.

    Without ``-name`` a tool asks its local schedd: ``local`` (the caller's
    ``_CONDOR_SCHEDD_NAME``, as a scheduler-universe job gets it: every schedd
    of the pool stands for an access point of its own), else the first.
    Raises :class:`ScheddError` for a name the pool does not know or a schedd
    that does not answer.
    """
    if tool not in NAMED_TOOLS:
        return store, list(args), False
    name, rest = split_name(tool, args)
    config = store.config()
    asked = name if name is not None else local
    index = 1 if not asked else index_of(config, asked)
    if index is None:
        raise ScheddError(unknown_name(tool, asked or ""))
    chosen = store.for_schedd(index)
    if is_off(chosen):
        addr = address(config, index)
        raise ScheddError(
            refused(tool, names(config)[index - 1], addr, not_answering(addr), name is not None)
        )
    return chosen, rest, name is not None


def job_key(store: Store, key: str) -> tuple[Store, str]:
    """``condor_ssh_to_job -name NAME``'s job, sent as ``NAME#C.P``: its schedd and id."""
    name, _, job_id = key.rpartition("#")
    config = store.config()
    index = index_of(config, name) if name else 1
    if index is None:
        raise ScheddError(unknown_name("condor_ssh_to_job", name))
    chosen = store.for_schedd(index)
    if is_off(chosen):
        raise ScheddError(f"{not_answering(address(config, index))}\n")
    return chosen, job_id


# --- the schedds' ads (condor_status -schedd) ---------------------------------


def schedd_ads(store: Store) -> list[Ad]:
    """One ``Scheduler`` ad per schedd, as its collector holds it."""
    from localpool.submit.job_ad import PLATFORM, VERSION

    config = store.config()
    now = int(time.time())
    ads = []
    for k, one in enumerate(all_stores(store, config), start=1):
        jobs = list(one.read().jobs.values())
        count = {s: sum(1 for ad in jobs if ad["JobStatus"] == s) for s in (IDLE, RUNNING, HELD)}
        owners = {ad.get("Owner") for ad in jobs}
        addr = address(config, k)
        busy = min(0.99, 0.01 + 0.002 * len(jobs))
        heard = _heard(one, now)
        ads.append(
            {
                "MyType": "Scheduler",
                "TargetType": "",
                "Name": names(config)[k - 1],
                "Machine": config.host,
                "MyAddress": addr,
                "ScheddIpAddr": addr,
                "AddressV1": f'{{[ p="primary"; a="127.0.0.1"; port=9618; n="Internet"; '
                f'alias="{config.host}"; spid="{addr.split("sock=")[1][:-1]}"; noUDP=true; ]}}',
                "CondorVersion": VERSION,
                "CondorPlatform": PLATFORM,
                "TotalRunningJobs": count[RUNNING],
                "TotalIdleJobs": count[IDLE],
                "TotalHeldJobs": count[HELD],
                "TotalRemovedJobs": sum(1 for ad in jobs if ad["JobStatus"] == REMOVED),
                "TotalJobAds": len(jobs),
                "TotalSchedulerJobsRunning": 0,
                "TotalLocalJobsRunning": 0,
                "NumUsers": len(owners),
                "MaxJobsRunning": 10000,
                "RecentDaemonCoreDutyCycle": round(busy, 6),
                "DaemonStartTime": heard - 60,
                "LastHeardFrom": heard,
                "MyCurrentTime": heard,
                "UpdateSequenceNumber": (heard // 300) % 100000,
                "IsLocalPool": True,
            }
        )
    return ads


def _heard(store: Store, now: int) -> int:
    """When the collector last heard from the schedd: now, or when it stopped answering."""
    try:
        return int((store.qdir / OFF_FILE).read_text().strip())
    except (OSError, ValueError):
        return now


def schedd_table(ads: list[Ad]) -> str:
    """``condor_status -schedd``: Name, Machine, RunningJobs, IdleJobs, HeldJobs, then totals."""
    width = max([len("Name")] + [len(str(a.get("Name", ""))) for a in ads]) + 1
    mwidth = max([len("Machine")] + [len(str(a.get("Machine", ""))) for a in ads]) + 1
    out = [
        f"{'Name':<{width}}{'Machine':<{mwidth}} RunningJobs   IdleJobs   HeldJobs",
        "",
    ]
    for a in ads:
        out.append(
            f"{a.get('Name', ''):<{width}}{a.get('Machine', ''):<{mwidth}}"
            f" {a.get('TotalRunningJobs', 0):>11} {a.get('TotalIdleJobs', 0):>10}"
            f" {a.get('TotalHeldJobs', 0):>10}"
        )
    totals = [sum(int(a.get(k, 0)) for a in ads) for k in ("TotalRunningJobs", "TotalIdleJobs")]
    held = sum(int(a.get("TotalHeldJobs", 0)) for a in ads)
    out += [
        "",
        "                      TotalRunningJobs      TotalIdleJobs      TotalHeldJobs",
        "",
        f"               Total {totals[0]:>17} {totals[1]:>18} {held:>18}",
    ]
    return "\n".join(out) + "\n"
