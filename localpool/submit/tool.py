"""``condor_submit``: read the description as the submitter, queue its jobs as the schedd.

The description, its ``include`` files, the executable and the initial
directory are read with the submitter's file-system identity; only the
queue is written as the pool. ``-interactive`` waits for the job and then
hands the client over to ``condor_ssh_to_job`` (the client runs ``ssh`` as
the user and removes the job when the shell ends).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from localpool.schedd import eventlog
from localpool.schedd.schedds import address, name_of
from localpool.schedd.store import Store
from localpool.security import privs
from localpool.security.privs import Account
from localpool.submit.submit_commands import parse_version
from localpool.tools.actions import Usage


def _parse_args(argv: Sequence[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"terse": False, "interactive": False, "append": [], "queue": None}
    files: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-terse":
            opts["terse"] = True
        elif arg in ("-interactive", "-i"):
            opts["interactive"] = True
        elif arg in ("-append", "-a"):
            i += 1
            if i >= len(argv):
                raise Usage("condor_submit: -append requires an argument")
            opts["append"].append(argv[i])
        elif arg == "-queue":
            opts["queue"] = " ".join(argv[i + 1 :])
            break
        elif arg in ("-name", "-pool", "-batch-name"):
            i += 1
            if arg == "-batch-name" and i < len(argv):
                opts["append"].append(f"batch_name = {argv[i]}")
        elif arg == "-" or not arg.startswith("-"):
            files.append(arg)
        else:
            raise Usage(f"condor_submit: unknown option {arg}")
        i += 1
    opts["files"] = files
    return opts


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """The submitter's environment while parsing (``$ENV(NAME)`` in a description)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _description(opts: dict[str, Any]) -> tuple[str, str] | None:
    files = opts["files"]
    if files and files[0] == "-":
        return "(stdin)", sys.stdin.read()
    if files:
        try:
            return files[0], Path(files[0]).read_text()
        except OSError as err:
            sys.stderr.write(
                f"\nERROR: Failed to open command file ({files[0]}) ({err.strerror})\n"
            )
            return None
    if opts["interactive"]:
        return "(interactive)", "request_memory = 512m\n"
    return "(stdin)", sys.stdin.read()


def condor_submit(
    argv: Sequence[str], store: Store, caller: Account, env: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    from localpool.submit.description import parse
    from localpool.submit.job_ad import SubmitError

    opts = _parse_args(argv)
    with privs.as_user(caller):
        described = _description(opts)
    if described is None:
        return 1, {}
    name, text = described
    config = store.config()
    if not opts["terse"]:
        sys.stdout.write("Submitting job(s)")
        sys.stdout.flush()
    try:
        with store.update() as queue:
            cluster = queue.next_cluster
            with privs.as_user(caller), _environment(env):
                submission = parse(
                    text,
                    cluster=cluster,
                    submit_file=name,
                    iwd=Path.cwd(),
                    owner=caller.name,
                    host=config.host,
                    append=opts["append"],
                    queue_override=opts["queue"],
                    interactive=opts["interactive"],
                    env=env,
                    version=parse_version(config.emulate),
                )
            now = int(time.time())
            for ad in submission.procs:
                ad.update(
                    QDate=now,
                    EnteredCurrentStatus=now,
                    GlobalJobId=f"{name_of(store, config)}#{cluster}.{ad['ProcId']}#{now}",
                )
                queue.jobs[f"{cluster}.{ad['ProcId']}"] = ad
            queue.next_cluster = cluster + 1
    except SubmitError as err:
        if not opts["terse"]:
            sys.stdout.write(err.stdout)
        sys.stderr.write(err.stderr)
        return 1, {}
    sys.stderr.write("".join(submission.warnings))
    for ad in submission.procs:
        eventlog.submitted(ad, address(config, store.schedd))
    count = len(submission.procs)
    if opts["terse"]:
        sys.stdout.write(f"{cluster}.0 - {cluster}.{count - 1}\n")
    else:
        sys.stdout.write(f".\n{count} job(s) submitted to cluster {cluster}.\n")
    sys.stdout.flush()
    if opts["interactive"]:
        from localpool.security.tokens import NETNS_ENV
        from localpool.startd.sshd import wait_for_start

        return wait_for_start(store, caller, f"{cluster}.0", env.get(NETNS_ENV, ""))
    return 0, {}
