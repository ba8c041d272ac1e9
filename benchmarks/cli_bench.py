"""condorsub start-up: --help and submit --dry-run wall time, median of repeated runs.

Run: python benchmarks/cli_bench.py [--repeat 20]
Targets (issue 5): --help <= 0.1 s, submit --dry-run <= 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONDORSUB = str(Path(sys.executable).parent / "condorsub")


def timed(args: list[str], cwd: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([CONDORSUB, *args], cwd=cwd, env=env, capture_output=True, check=True)
    return time.perf_counter() - started


ROWS = [
    ("condorsub --help", ["--help"], 0.1),
    ("condorsub submit --dry-run", ["submit", "--dry-run", "--cpus", "2", "/bin/echo", "hi"], 0.3),
]


def measure(repeat: int) -> dict[str, list[float]]:
    """Wall times of each command, `repeat` runs after one warm-up."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CONDORSUB_JOBS": str(Path(tmp) / "jobs")}
        for name, cli_args, _target in ROWS:
            timed(cli_args, tmp, env)  # warm the file cache
            out[name] = [timed(cli_args, tmp, env) for _ in range(repeat)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    values = measure(args.repeat)
    print(f"{'figure':<32} {'median s':>9} {'min':>7} {'max':>7} {'target':>7}")
    for name, _args, target in ROWS:
        v = values[name]
        print(
            f"{name:<32} {statistics.median(v):>9.3f} {min(v):>7.3f} {max(v):>7.3f} {target:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
