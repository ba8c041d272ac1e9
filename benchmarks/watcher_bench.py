"""condor_q calls per watcher interval with 100 sessions: one schedd, then two.

Run: python benchmarks/watcher_bench.py [--sessions 100] [--window 20] [--interval 2]

A localpool of its own (a temporary directory, stopped and removed after)
holds --sessions jobs marked as one hub's (``CondorSpawnerHub``), all on one
schedd, then split over two (``--schedds 2``). The hub's queue watchers
(``condorspawner.watcher``, one per schedd, as the spawner makes them) follow
every job for --window seconds; the figure is their condor_q calls per
interval: one per schedd (target: 1 with one schedd, 2 with two), however
many sessions. Measured as spawner_bench measures the schedd load, without a
hub (the watcher is the only one that asks the queue).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from condorspawner.condor import Condor
from condorspawner.jobad import HUB_ATTR, config_string
from condorspawner.site import Pool
from condorspawner.watcher import QueueWatcher

HUB = "watcher-bench"


def localpool(root: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "localpool.cli", "--dir", str(root), *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


def names(root: Path) -> list[str]:
    out = subprocess.run(
        [str(root / "bin" / "condor_status"), "-schedd", "-af", "Name"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return out.split()


def submit(root: Path, schedd: str, count: int, work: Path) -> None:
    (work / "s.sub").write_text(
        "executable = /bin/sleep\narguments = 3600\nrequest_memory = 1\n"
        f"MY.{HUB_ATTR} = {config_string(HUB)}\nqueue {count}\n"
    )
    subprocess.run(
        [str(root / "bin" / "condor_submit"), "-name", schedd, "s.sub"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=120,
    )


async def measure(root: Path, schedds: list[str], per: int, window: float, interval: float):
    QueueWatcher._instances.clear()
    base = Condor(Pool(bin_dir=str(root / "bin")))
    watchers = []
    for name in schedds:
        w = QueueWatcher.shared(base.for_schedd(name), HUB, interval=interval, jitter=0.0)
        for proc in range(per):
            w.watch(f"1.{proc}")
        watchers.append(w)
    await asyncio.sleep(interval)  # the first look of each
    before = [w.queries for w in watchers]
    await asyncio.sleep(window)
    calls = sum(w.queries for w in watchers) - sum(before)
    for w in watchers:
        await w.stop()
    return calls / (window / interval)


def run(sessions: int = 100, window: float = 20.0, interval: float = 2.0) -> dict[int, float]:
    """condor_q calls per interval, by number of schedds (1 and 2), ``sessions`` jobs each."""
    work = Path(tempfile.mkdtemp(prefix="watcher-bench-"))
    root = work / "pool"
    results = {}
    try:
        for count in (1, 2):
            localpool(root, "stop", "--remove-jobs")
            localpool(root, "start", "--schedds", str(count), "--cpus", "1", "--memory", "1GB")
            schedds = names(root)
            per = sessions // count
            for name in schedds:
                submit(root, name, per, work)
            results[count] = asyncio.run(measure(root, schedds, per, window, interval))
    finally:
        localpool(root, "stop", "--remove-jobs")
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    results = run(args.sessions, args.window, args.interval)
    print(
        f"condor_q calls per interval with {args.sessions} sessions: "
        f"1 schedd {results[1]:.2f} (target 1) | 2 schedds {results[2]:.2f} (target 2)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
