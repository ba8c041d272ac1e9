"""How long a real HTCondor refuses ``condor_ssh_to_job`` after a job starts running.

A notebook's tunnel cannot begin before that: for ``GET_JOB_CONNECT_INFO`` the schedd
asks the startd where the job's starter is (``locateStarter``), and the startd knows
only once the starter's first timed update has come (``Starter::getIpAddr``; until then
``Failed to read address of starter for this job``, a retry). That update comes
``STARTER_INITIAL_UPDATE_INTERVAL`` seconds after the job is spawned (8 by default in
``param_info.in``; the manual says 2), or ``STARTER_UPDATE_INTERVAL`` if that is
shorter; nothing the job does brings it forward (HTCondor 25.0's source: schedd.cpp's
connect-info handler, startd Starter.cpp, jic_shadow.cpp). One real pool per setting,
the same jobs on each, run as an ordinary account: from JobStatus 2 to the first
``condor_ssh_to_job JOB true`` that succeeds, asked every 0.2 s (``-auto-retry`` asks
every 5 s).
``CONDORSPAWNER_HTCONDOR=... python -m benchmarks.ssh_window [--jobs 4] [--json FILE]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import report
from tests.harness import UnixUsers
from tests.realpool import (
    HOW_TO_RUN,
    HTCONDOR_DEFAULTS,
    RealPool,
    release_dir,
    starter_first_update,
)
from tests.waiting import seconds_until

# (what it stands for, configuration added to the tests' pool's)
SETTINGS = (
    ("HTCondor's defaults", HTCONDOR_DEFAULTS),
    *(
        (f"STARTER_INITIAL_UPDATE_INTERVAL = {seconds}", starter_first_update(seconds))
        for seconds in (1, 0)
    ),
)
ASK_EVERY = 0.2  # seconds between two condor_ssh_to_job tries
GIVE_UP = 60.0


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

        seconds_until(running, GIVE_UP, f"job {job} running", ASK_EVERY)
        windows.append(
            seconds_until(reachable, GIVE_UP, f"condor_ssh_to_job into {job}", ASK_EVERY)
        )
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
        pool = RealPool(base, release_dir(), extra_config=extra)
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
