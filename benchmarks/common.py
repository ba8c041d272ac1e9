"""What the side-by-side benchmarks share.

A localpool sized for a number of sessions, the instant stand-in server,
and figures read off a running hub: its memory, its processes, and the
spawner's "spawn timings" log lines.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.harness import Hub, Pool

STANDIN = Path(__file__).resolve().parent / "standin_server.py"
TIMING = re.compile(
    r"spawn timings for job \S+: submit ([\d.]+) s, queue wait ([\d.]+) s, "
    r"start in the job and tunnel ([\d.]+) s, total ([\d.]+) s"
)


def start_pool(root: Path, sessions: int, namespaces: str) -> Pool:
    """A localpool with room for `sessions` notebook jobs (and a few more)."""
    pool = Pool(root / "pool", root / "submit")
    pool.submit_dir.mkdir(parents=True)
    result = pool.localpool(
        "start",
        "--cpus",
        str(sessions + 8),
        "--memory",
        "512GB",
        "--disk",
        "20TB",
        "--cycle-seconds",
        "0.1",
        "--network-namespaces",
        namespaces,
    )
    if result.returncode != 0:
        raise SystemExit(f"localpool did not start: {result.stderr}")
    return pool


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


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process below ``pid``."""
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,comm="], capture_output=True, text=True, check=True
    ).stdout
    children: dict[int, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        p, pp, comm = line.split(None, 2)
        children.setdefault(int(pp), []).append((int(p), comm))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def hub_pid(hub: Hub) -> int:
    """The hub's JupyterHub process."""
    return int((hub.root / "jupyterhub.pid").read_text())


def timings(hub: Hub) -> list[tuple[float, ...]]:
    """(submit, queue wait, start and tunnel, total) of each spawn the hub logged."""
    text = (hub.root / "jupyterhub.log").read_text(errors="replace")
    return [tuple(float(x) for x in m.groups()) for m in TIMING.finditer(text)]
