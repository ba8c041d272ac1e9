"""What the benchmarks share: the hub as a site runs it, and figures read off it.

The set-up (one place for compare, spawner_bench and faults): a 0755 directory,
localpool started by root and installed under a prefix, one real account per
benchmark user, and JupyterHub as root acting for them through sudo; all of it
removed afterwards, even on failure. The figures: the hub's memory, its tunnel
processes, and the spawner's "spawn timings" log lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.harness import Hub, SystemPool, UnixUsers
from tests.realpool import RealPool, release_dir

STANDIN = Path(__file__).resolve().parent / "standin_server.py"
SPLIT = ("submit", "queue wait", "tunnel up", "server answering")  # then the total
TIMING = re.compile(
    r"spawn timings for job \S+: submit ([\d.]+) s, queue wait ([\d.]+) s, "
    r"tunnel up ([\d.]+) s, server answering ([\d.]+) s, total ([\d.]+) s"
)
# the job's side of a tunnel, started by the pool (never the hub's)
JOB_SIDE = ("sshd", "setpriv", "nsenter")


class SitePool(SystemPool):
    """A :class:`SystemPool` with room for ``slots`` jobs (1 cpu each, memory to spare)."""

    def __init__(self, base: Path, network: str, slots: int, cycle_seconds: float) -> None:
        super().__init__(base, network=network)
        self.slots = slots
        self.cycle_seconds = cycle_seconds

    def start(self) -> None:
        started = self.localpool(
            "start",
            "--network",
            self.network,
            "--cpus",
            str(self.slots),
            "--memory",
            "512GB",
            "--disk",
            "20TB",
            "--cycle-seconds",
            str(self.cycle_seconds),
            "--periodic-seconds",
            "0.5",
        )
        if started.returncode != 0:
            raise SystemExit(f"localpool did not start: {started.stdout}{started.stderr}")
        installed = self.localpool("install", "--prefix", str(self.prefix))
        if installed.returncode != 0:
            raise SystemExit(f"localpool install failed: {installed.stderr}")


@contextlib.contextmanager
def site_pool(
    accounts: int,
    *,
    network: str = "isolated",
    cycle_seconds: float = 0.1,
    backend: str = "localpool",
    pool_config: str = "",
) -> Iterator[tuple[Path, SitePool | RealPool, list[str]]]:
    """(a 0755 base directory, a root-run installed pool, ``accounts`` real accounts).

    Network ``isolated``: a namespace per job (CondorSpawner's tunnels); ``shared``:
    jobs on the host's loopback (batchspawner connects to the job directly).
    Backend ``htcondor``: the real HTCondor of ``CONDORSPAWNER_HTCONDOR`` instead of
    localpool (its jobs always share the loopback), ``pool_config`` added to its
    configuration.
    """
    if os.geteuid() != 0:
        raise SystemExit("the benchmarks run the hub as a site does: root, sudo, real accounts")
    base = Path(tempfile.mkdtemp(prefix="condorspawner-bench-"))
    base.chmod(0o755)
    (base / "homes").mkdir(mode=0o755)
    users = UnixUsers(base / "homes")
    if backend == "htcondor":
        pool = RealPool(
            base,
            release_dir(),
            cpus=accounts + 8,
            memory_mb=512 * 1024,
            extra_config=pool_config,
        )
    else:
        pool = SitePool(base, network, accounts + 8, cycle_seconds)
    try:
        pool.start()
        names = [users(str(i)) for i in range(accounts)]
        yield base, pool, names
    finally:
        pool.stop()
        users.remove_all()
        shutil.rmtree(base, ignore_errors=True)


def sudo_hub(
    root: Path, pool: SystemPool | RealPool, extra_config: str = "", start_timeout: str = "30s"
) -> Hub:
    """A hub (not started) whose site file runs every tool as the user:
    ``run_as = ["sudo", "-n", "-u", "{user}"]``, ``bin_dir`` the hub's counting shim
    (``root/shim``) over the pool's installed tools."""
    from hub_config.demo import site_toml

    root.mkdir(mode=0o755)
    site = site_toml(None, start_timeout=start_timeout, run_as_users=str(root / "shim"))
    # the stand-in server needs no disk; a real execute point has only its own to offer
    site += '\n[limits.disk]\ndefault = "1GB"\n'
    hub = Hub(
        root,
        pool,
        site=site,
        extra_config='c.CondorSpawner.submit_root = "{home}/.condorspawner"\n' + extra_config,
    )
    assert hub.shim == root / "shim", hub.shim
    return hub


@contextlib.contextmanager
def running(hub: Hub) -> Iterator[Hub]:
    """The hub started, and stopped on the way out (its tunnels end with it)."""
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


@contextlib.contextmanager
def site_hub(
    sessions: int,
    *,
    network: str = "isolated",
    extra_config: str = "",
    cycle_seconds: float = 0.1,
    backend: str = "localpool",
    start_timeout: str = "30s",
) -> Iterator[tuple[Hub, SitePool | RealPool, list[str]]]:
    """A running sudo hub on a system pool (``backend``, as :func:`site_pool`) with
    ``sessions`` real accounts; ``start_timeout`` is the site's queue wait limit."""
    with (
        site_pool(sessions, network=network, cycle_seconds=cycle_seconds, backend=backend) as (
            base,
            pool,
            names,
        ),
        running(sudo_hub(base / "hub", pool, extra_config, start_timeout)) as hub,
    ):
        yield hub, pool, names


def rss_kb(pid: int) -> int:
    """Resident memory of a process (0 if it has just ended)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size of a process (shared pages split among their users; 0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def uss_kb(pid: int) -> int:
    """Unique set size of a process: the pages no other process shares (0 if gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    fields = {line.split(":")[0]: line.split()[1] for line in lines if ":" in line}
    return int(fields.get("Private_Clean", 0)) + int(fields.get("Private_Dirty", 0))


def _children() -> dict[int, list[tuple[int, str, str]]]:
    """parent pid -> (pid, command name, command line) of every process, whatever its user."""
    children: dict[int, list[tuple[int, str, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        # the name may hold spaces and parentheses: the fields start after the last ')'
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append((int(entry.name), comm, args))
    return children


def tunnel_processes(hub: Hub) -> list[tuple[int, str]]:
    """(pid, command name) of the hub's tunnels: the keeper below the hub and everything
    below it (sudo, and what sudo runs as the user: condor_ssh_to_job, ssh, its proxy
    helper). Not the proxy, nor a tool the hub happens to be running."""
    children = _children()
    found, todo = [], [(hub_pid(hub), False)]
    while todo:  # a tree: each process is visited once
        pid, in_tunnel = todo.pop()
        for child, comm, args in children.get(pid, []):
            tunnel = in_tunnel or "proxy_tunnel.keeper" in args
            if tunnel and comm not in JOB_SIDE:
                found.append((child, comm))
            todo.append((child, tunnel))
    return found


def hub_pid(hub: Hub) -> int:
    """The hub's JupyterHub process."""
    return int((hub.root / "jupyterhub.pid").read_text())


def timings(hub: Hub) -> list[tuple[float, ...]]:
    """(submit, queue wait, tunnel up, server answering, total) of each spawn the hub
    logged (``SPLIT`` names the parts)."""
    text = (hub.root / "jupyterhub.log").read_text(errors="replace")
    return [tuple(float(x) for x in m.groups()) for m in TIMING.finditer(text)]


def report(figures: Mapping[str, float], json_path: Path | None) -> None:
    """A benchmark's figures, one line each, and as JSON to ``json_path`` if given."""
    width = max((len(name) for name in figures), default=0)
    for name, value in figures.items():
        print(f"{name:<{width}} {value:8.2f}")
    if json_path:
        json_path.write_text(json.dumps(dict(figures), indent=2))
