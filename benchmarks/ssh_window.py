"""How long a real HTCondor refuses ``condor_ssh_to_job`` after a job starts running.

A notebook's tunnel cannot begin before that: the schedd answers ``GET_JOB_CONNECT_INFO``
only once the starter's first update has told it where the starter is, and that update
comes ``STARTER_INITIAL_UPDATE_INTERVAL`` seconds after the job starts (8 by default in
``param_info.in``; the manual says 2), or ``STARTER_UPDATE_INTERVAL`` if that is
shorter. One real pool per setting, the same jobs on each, run as an ordinary account:
from JobStatus 2 to the first ``condor_ssh_to_job JOB true`` that succeeds.
``CONDORSPAWNER_HTCONDOR=... python -m benchmarks.ssh_window [--jobs 4] [--json FILE]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import report
from tests.harness import UnixUsers
from tests.realpool import HOW_TO_RUN, RealPool, release_dir

# (what it stands for, configuration added to the pool's); the tests' pool sets
# STARTER_UPDATE_INTERVAL = 5, so HTCondor's own defaults are restored first
SETTINGS = (
    ("HTCondor's defaults", "STARTER_UPDATE_INTERVAL = 300\n"),
    (
        "STARTER_INITIAL_UPDATE_INTERVAL = 1",
        "STARTER_UPDATE_INTERVAL = 300\nSTARTER_INITIAL_UPDATE_INTERVAL = 1\n",
    ),
)
ASK_EVERY = 0.2  # seconds between two condor_ssh_to_job tries
GIVE_UP = 60.0


class TunedPool(RealPool):
    """A real pool with some configuration of its own after the tests' pool's."""

    def __init__(self, base: Path, extra: str) -> None:
        super().__init__(base, release_dir())
        self.extra = extra

    def configuration(self) -> str:
        return super().configuration() + self.extra


def _until(predicate, what: str) -> float:
    """Seconds until ``predicate()`` holds (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < GIVE_UP:
        if predicate():
            return time.monotonic() - started
        time.sleep(ASK_EVERY)
    raise AssertionError(f"not within {GIVE_UP:g} s: {what}")


def refusal_window(pool: RealPool, user: str, jobs: int) -> list[float]:
    """Seconds from each job's JobStatus 2 to its first successful condor_ssh_to_job."""
    windows = []
    for _ in range(jobs):
        job = pool.submit("executable = /bin/sleep\narguments = 600\nqueue\n", user=user)

        def running(job: str = job) -> bool:
            out = pool.run("condor_q", job, "-af", "JobStatus", user=user).stdout
            return out.strip() == "2"

        def reachable(job: str = job) -> bool:
            return pool.run("condor_ssh_to_job", job, "true", user=user).returncode == 0

        _until(running, f"job {job} running")
        windows.append(_until(reachable, f"condor_ssh_to_job into {job}"))
        pool.run("condor_rm", job, user=user)
    return windows


def run(jobs: int = 4) -> dict[str, float]:
    """The median refusal window (s) under each setting, one pool each."""
    if os.geteuid() != 0:
        raise SystemExit("the real pool runs as root, its jobs as an ordinary account")
    figures = {}
    for name, extra in SETTINGS:
        base = Path(tempfile.mkdtemp(prefix="condorspawner-window-"))
        base.chmod(0o755)
        (base / "homes").mkdir(mode=0o755)
        users = UnixUsers(base / "homes")
        pool = TunedPool(base, extra)
        try:
            pool.start()
            windows = refusal_window(pool, users("w"), jobs)
            figures[name] = statistics.median(windows)
        finally:
            pool.stop()
            users.remove_all()
            shutil.rmtree(base, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.ssh_window", description=__doc__)
    parser.add_argument("--jobs", type=int, default=4, help="jobs per setting")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if release_dir() is None:
        parser.error(HOW_TO_RUN)
    figures = run(args.jobs)
    report({f"condor_ssh_to_job refused, s: {k}": v for k, v in figures.items()}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
