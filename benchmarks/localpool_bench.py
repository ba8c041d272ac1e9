"""localpool's own figures: condor_q -json with 1000 jobs queued, submitting queue 1000.

Run: python benchmarks/localpool_bench.py [--jobs 1000] [--repeat 5]
Targets (issue 3): condor_q -json <= 0.3 s, condor_submit of queue 1000 <= 1 s.
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

SUBMIT = "executable = /bin/sleep\narguments = 600\nrequest_cpus = 1000\nqueue {n}\n"


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {result.stderr.decode()}")
    return elapsed


def measure(jobs: int, repeat: int) -> dict[str, list[float]]:
    """condor_submit of `queue jobs` into a queue of `jobs`, and condor_q -json over it."""
    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp) / "pool", Path(tmp) / "submit"
        work.mkdir()
        env = {
            **os.environ,
            "LOCALPOOL_DIR": str(root),
            "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}",
        }
        subprocess.run(
            [sys.executable, "-m", "localpool.cli", "start"],
            env=env,
            check=True,
            capture_output=True,
        )
        try:
            (work / "many.sub").write_text(SUBMIT.format(n=jobs))
            submits = []
            for _ in range(repeat):  # each submit into a queue of exactly `jobs` jobs
                subprocess.run(
                    ["condor_rm", "-all"], env=env, cwd=work, capture_output=True, check=False
                )
                submits.append(timed(["condor_submit", "-terse", "many.sub"], env, work))
            queries = [timed(["condor_q", "-json", "-allusers"], env, work) for _ in range(repeat)]
        finally:
            subprocess.run(
                [sys.executable, "-m", "localpool.cli", "stop", "--remove-jobs"],
                env=env,
                capture_output=True,
                check=False,
            )
    return {f"condor_submit queue {jobs}": submits, f"condor_q -json ({jobs} jobs queued)": queries}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    values = measure(args.jobs, args.repeat)
    print(f"{'figure':<40} {'median s':>9} {'min':>7} {'max':>7} {'target':>7}")
    for (name, v), target in zip(values.items(), (1.0, 0.3), strict=True):
        print(
            f"{name:<40} {statistics.median(v):>9.3f} {min(v):>7.3f} {max(v):>7.3f} {target:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
