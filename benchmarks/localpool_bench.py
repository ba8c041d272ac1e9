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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
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
            (work / "many.sub").write_text(SUBMIT.format(n=args.jobs))
            submits = []
            for _ in range(args.repeat):  # each submit into a queue of exactly --jobs jobs
                subprocess.run(
                    ["condor_rm", "-all"], env=env, cwd=work, capture_output=True, check=False
                )
                submits.append(timed(["condor_submit", "-terse", "many.sub"], env, work))
            queued = args.jobs
            queries = [
                timed(["condor_q", "-json", "-allusers"], env, work) for _ in range(args.repeat)
            ]
        finally:
            subprocess.run(
                [sys.executable, "-m", "localpool.cli", "stop", "--remove-jobs"],
                env=env,
                capture_output=True,
                check=False,
            )
    rows = [
        (f"condor_submit queue {args.jobs}", submits, 1.0),
        (f"condor_q -json ({queued} jobs queued)", queries, 0.3),
    ]
    print(f"{'figure':<40} {'median s':>9} {'min':>7} {'max':>7} {'target':>7}")
    for name, values, target in rows:
        print(
            f"{name:<40} {statistics.median(values):>9.3f} {min(values):>7.3f} "
            f"{max(values):>7.3f} {target:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
