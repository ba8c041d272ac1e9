"""``localpool start|stop|status|env|install``: run the one-machine pool.

``start`` writes the pool's configuration and its ``condor_*`` commands into
the pool directory (``$LOCALPOOL_DIR``) and starts the pool process in the
background; ``env`` prints the lines that put those commands first on PATH;
``install --prefix DIR`` installs the commands as on an access point.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from localpool.daemon import pool_pid
from localpool.install import install, write_tools
from localpool.schedd.jobstate import JOB_PID_FILE
from localpool.schedd.scheduler import namespaces_available
from localpool.schedd.store import DEFAULT_DIR_ENV, PoolConfig, Store
from localpool.submit.submit_commands import DEFAULT_VERSION, parse_version

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
NETWORK = {"isolated": "auto", "shared": "off"}  # --network -> network_namespaces
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*", re.IGNORECASE)
_MB_PER_UNIT = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024, "b": 1 / (1024 * 1024)}


def _size(text: str) -> int:
    """Megabytes, binary as HTCondor counts (``16GB``, ``512M``, ``1.5GiB``, ``100B``; bare: MB)."""
    match = _SIZE_RE.fullmatch(text) if len(text) <= 64 else None
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size (write it like 4GB, 512MB, 1.5G or 4096 for MB)"
        )
    number, unit, byte = match.groups()
    return math.ceil(float(number) * _MB_PER_UNIT[(unit or byte or "m").lower()])


def start(args: argparse.Namespace, store: Store) -> int:
    config = store.config() if store.exists() else PoolConfig()
    for name in (
        "cpus",
        "memory_mb",
        "disk_mb",
        "gpus",
        "network_namespaces",
        "ssh_ready_delay",
        "shadow_delay",
        "cycle_seconds",
        "periodic_seconds",
        "schedds",
    ):
        value = getattr(args, name, None)
        if value is not None:
            setattr(config, name, value)
    if args.container_os is not None:
        config.container_os = [c for c in args.container_os.split(",") if c]
    if args.network is not None:
        config.network_namespaces = NETWORK[args.network]
    if args.emulate is not None:
        config.emulate = args.emulate
    store.write_config(config)
    write_tools(store.bin_dir, store.root)
    if pool_pid(store):
        print(f"localpool: already running in {store.root}")
        return 0
    if args.foreground:
        from localpool.daemon import main as daemon_main

        return daemon_main([str(store.root)])
    log = os.open(store.root / "pool.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    child = subprocess.Popen(
        [sys.executable, "-m", "localpool.daemon", str(store.root)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    os.close(log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        # our child's own pid: the file still names a pool just stopped (or is being
        # rewritten) while the new process takes it over
        running = pool_pid(store)
        if running == child.pid or (running and child.poll() is not None):
            return status(args, store)
        time.sleep(0.05)
    print(
        f"localpool: the pool process did not start within {START_TIMEOUT:g} s; "
        f"see {store.root / 'pool.log'}",
        file=sys.stderr,
    )
    return 1


def stop(args: argparse.Namespace, store: Store) -> int:
    if args.remove_jobs and store.exists():
        _kill_all_jobs(store)
    pid = pool_pid(store)
    if pid is None:
        print("localpool: not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if pool_pid(store) is None:
            print("localpool: stopped")
            return 0
        time.sleep(0.05)
    print(f"localpool: pool process {pid} did not stop within {STOP_TIMEOUT:g} s", file=sys.stderr)
    return 1


def _kill_all_jobs(store: Store) -> None:
    """End every job of every schedd (its process group and its starter's), empty the queues."""
    from localpool.schedd.schedds import all_stores

    for one in all_stores(store):
        _kill_queue(one)


def _kill_queue(store: Store) -> None:
    with store.update() as queue:
        for job_id, ad in queue.jobs.items():
            groups = [ad.get("LocalpoolStarterPid")]
            with contextlib.suppress(OSError, ValueError):
                groups.append(int((store.job_dir(job_id) / JOB_PID_FILE).read_text()))
            for group in filter(None, groups):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
        queue.jobs.clear()


def status(args: argparse.Namespace, store: Store) -> int:
    if not store.exists():
        print(f"localpool: no pool in {store.root}")
        return 1
    config = store.config()
    pid = pool_pid(store)
    from localpool.schedd.schedds import all_stores, is_off, names

    stores = all_stores(store, config)
    jobs = [ad for one in stores for ad in one.read().jobs.values()]
    counts = {
        name: sum(1 for ad in jobs if ad["JobStatus"] == code)
        for name, code in (("idle", 1), ("running", 2), ("held", 5), ("removing", 3))
    }
    if config.network == "shared":
        netns = "shared: jobs share the host's loopback (any job may listen on a free port)"
    elif namespaces_available():
        netns = "isolated: each job has a network namespace with loopback only"
    else:
        netns = "shared: jobs share the host's loopback (isolated needs root and unshare)"
    print(f"pool directory: {store.root}")
    print(f"pool process:   {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
    print(
        f"execute point:  slot1@{config.host}: {config.cpus} cpus, {config.memory_mb} MB, "
        f"{config.disk_mb} MB disk, {config.gpus} gpus"
    )
    print(f"container OS:   {', '.join(config.container_os) or 'none'}")
    print(f"network:        {netns}")
    print(f"emulates:       HTCondor {config.emulate} (its submit commands)")
    print("jobs:           " + ", ".join(f"{n} {c}" for c, n in counts.items()))
    for one, name in zip(stores, names(config), strict=True):
        state = "not answering (schedd-off)" if is_off(one) else "answering"
        print(f"schedd:         {name}: {state}, {len(one.read().jobs)} jobs")
    return 0 if pid else 3


def install_command(args: argparse.Namespace, store: Store) -> int:
    install(args.prefix, store.root)
    print(f"localpool: condor_* commands in {args.prefix.absolute() / 'bin'} for {store.root}")
    return 0


def _version(text: str) -> str:
    try:
        parse_version(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def schedd_switch(args: argparse.Namespace, store: Store) -> int:
    """``schedd-off NAME`` / ``schedd-on NAME``: one schedd stops (starts again) answering."""
    from localpool.schedd.schedds import index_of, names, set_off

    if not store.exists():
        print(f"localpool: no pool in {store.root}", file=sys.stderr)
        return 1
    config = store.config()
    index = index_of(config, args.name)
    if index is None:
        print(
            f"localpool: no schedd {args.name!r} (this pool has {', '.join(names(config))})",
            file=sys.stderr,
        )
        return 1
    set_off(store.for_schedd(index), args.command == "schedd-off")
    state = "does not answer" if args.command == "schedd-off" else "answers"
    print(f"localpool: schedd {names(config)[index - 1]} {state}")
    return 0


def env(args: argparse.Namespace, store: Store) -> int:
    print(f"export {DEFAULT_DIR_ENV}={shlex.quote(str(store.root))}")
    print(f'export PATH={shlex.quote(str(store.bin_dir))}:"$PATH"')
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="localpool", description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, help=f"pool directory (default ${DEFAULT_DIR_ENV})")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start", help="start the pool process (configure it on first start)")
    s.add_argument("--cpus", type=int)
    s.add_argument("--memory", dest="memory_mb", type=_size, help="e.g. 16GB")
    s.add_argument("--disk", dest="disk_mb", type=_size, help="e.g. 64GB")
    s.add_argument("--gpus", type=int)
    s.add_argument("--container-os", help="comma-separated ContainerOS values offered")
    s.add_argument(
        "--network",
        choices=tuple(NETWORK),
        help="isolated: a network namespace per job (root); shared: the host's loopback",
    )
    s.add_argument(
        "--network-namespaces",
        choices=("auto", "on", "off"),
        help="older spelling: auto/on = isolated, off = shared",
    )
    s.add_argument(
        "--emulate",
        type=_version,
        help=f"HTCondor version whose submit commands to know (default {DEFAULT_VERSION})",
    )
    s.add_argument(
        "--ssh-ready-delay",
        type=float,
        help="seconds after a job starts during which condor_ssh_to_job says retry (default"
        " 1, a real pool's with STARTER_INITIAL_UPDATE_INTERVAL = 0; 10 for HTCondor's defaults)",
    )
    s.add_argument(
        "--shadow-delay",
        type=float,
        help="seconds a started job shows its last run's JobCurrentStartDate (default: a cycle)",
    )
    s.add_argument(
        "--schedds", type=int, choices=range(1, 9), metavar="N", help="access points (1-8)"
    )
    s.add_argument("--cycle-seconds", type=float)
    s.add_argument("--periodic-seconds", type=float)
    s.add_argument("--foreground", action="store_true")
    t = sub.add_parser("stop", help="stop the pool process (jobs keep running)")
    t.add_argument("--remove-jobs", action="store_true", help="also kill and forget every job")
    sub.add_parser("status", help="what the pool is and holds")
    for verb, what in (("schedd-off", "stops answering"), ("schedd-on", "answers again")):
        o = sub.add_parser(verb, help=f"one schedd {what} (its jobs keep running)")
        o.add_argument("name", help="the schedd's Name (or the part before @)")
    sub.add_parser("env", help="shell lines that put the pool's condor_* commands on PATH")
    i = sub.add_parser("install", help="install condor_* commands for this pool under a prefix")
    i.add_argument("--prefix", type=Path, required=True, help="writes PREFIX/bin, PREFIX/etc")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    store = Store(args.dir)
    command = {
        "start": start,
        "stop": stop,
        "status": status,
        "env": env,
        "install": install_command,
        "schedd-off": schedd_switch,
        "schedd-on": schedd_switch,
    }[args.command]
    return command(args, store)


if __name__ == "__main__":
    sys.exit(main())
