"""Run a pool's daemons with terminals as a stock system makes them.

    unshare --mount --propagation private python -m tests.terminals PROGRAM [ARG...]

A pool starts the job's sshd as the job's owner; for a shell it asks for a terminal
and, not being root, needs the new one to belong to group ``tty`` already (OpenSSH's
pty_setowner: else ``chown(/dev/pts/N, uid, 5) failed: Operation not permitted`` and
the session closes, ``Connection to condor-job.HOST closed by remote host``). Debian
and EL mount devpts with ``gid=5,mode=620``; the machines these tests run on lack
``gid=5``. In the fresh mount namespace ``unshare`` gives, this mounts a devpts
instance of its own with those options, for the pool's processes only, then becomes
PROGRAM. Used by both test pools (``tests.realpool``, ``tests.harness.SystemPool``).
"""

from __future__ import annotations

import os
import subprocess
import sys

MOUNTS = (
    [
        "mount",
        "-t",
        "devpts",
        "-o",
        "newinstance,gid=5,mode=620,ptmxmode=0666",
        "devpts",
        "/dev/pts",
    ],
    ["mount", "--bind", "/dev/pts/ptmx", "/dev/ptmx"],
)


def command(argv: list[str]) -> list[str]:
    """``argv`` run in a mount namespace of its own with stock terminals."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        sys.executable,
        "-m",
        "tests.terminals",
        *argv,
    ]


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m tests.terminals PROGRAM [ARG...] (under unshare --mount)")
    for mount in MOUNTS:
        subprocess.run(mount, check=True, capture_output=True, timeout=30)
    os.execvp(argv[0], argv)  # noqa: S606 (argument list, no shell)


if __name__ == "__main__":
    main(sys.argv[1:])
