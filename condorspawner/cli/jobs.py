"""condorsub q, hold, release, rm, logs and containers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from condorspawner.cli.context import locate, queue_ads, run, site
from condorspawner.cli.display import DAG_ATTRS, STATUS, print_queue
from condorspawner.cli.exits import USAGE, CliError
from condorspawner.condor import check_job_ids

QUEUE_ATTRS = [
    "ClusterId",
    "ProcId",
    "Owner",
    "QDate",
    "JobStatus",
    "ContainerOS",
    "RequestCpus",
    "RequestMemory",
    "Cmd",
    "Arguments",
    "Args",
    "JobCurrentStartDate",
    "RemoteWallClockTime",
    "HoldReason",
    "JobBatchName",
]


def _ids(job_ids: list[str]) -> list[str]:
    try:
        return check_job_ids(job_ids)
    except ValueError as err:
        raise CliError(str(err), USAGE) from None


def queue(args: Any) -> int:
    the_site = site()
    ids = _ids(args.job_ids)
    attrs = [] if args.json else [*QUEUE_ATTRS, *DAG_ATTRS]
    attrs = [*attrs, "GlobalJobId"] if attrs else attrs
    ads = queue_ads(the_site, ids, attrs, args.all, args.name)  # every schedd, ScheddName in each
    if args.json:
        print(json.dumps(ads, indent=1))
        return 0
    # a workflow is one line unless its nodes are asked for (--nodes, or by job id)
    print_queue(ads, nodes=args.nodes or bool(ids))
    return 0


def act(args: Any) -> int:
    the_site = site()
    for job_id in _ids(args.job_ids):
        tools = locate(the_site, job_id, args.name)
        method = {"hold": tools.hold, "release": tools.release, "rm": tools.rm}[args.command]
        print(run(method([job_id], reason=args.reason)), end="")
    return 0


def _job_ad(tools: Any, job_id: str) -> tuple[dict[str, Any], bool]:
    attrs = ["ClusterId", "ProcId", "JobStatus", "Iwd", "Out", "Err", "UserLog"]
    ads = run(tools.q([job_id], attributes=attrs))
    if ads:
        return ads[0], True
    ads = run(tools.history([job_id], attributes=attrs, limit=1))
    if ads:
        return ads[0], False
    raise CliError(f"job {job_id} not found in the queue or the history")


def logs(args: Any) -> int:
    (job_id,) = _ids([args.job_id])
    if "." not in job_id:
        job_id += ".0"
    the_site = site()
    tools = locate(the_site, job_id, args.name)
    ad, in_queue = _job_ad(tools, job_id)
    if args.events:
        path = ad.get("UserLog")
        if not path:
            raise CliError(f"job {job_id} has no event log (no 'log =' in its description)")
        return _show(Path(path), follow=args.follow, until=lambda: _left(tools, job_id))
    attr, sandbox = ("Err", "_condor_stderr") if args.err else ("Out", "_condor_stdout")
    if in_queue and ad.get("JobStatus") == 2:
        # a running job's output is still in its sandbox: read it there
        command = ["tail", "-n", "+1", "-f", sandbox] if args.follow else ["cat", sandbox]
        argv = [*tools.command("condor_ssh_to_job", []), "-auto-retry", job_id, " ".join(command)]
        return subprocess.run(argv, check=False).returncode
    path = Path(ad.get(attr) or "/dev/null")
    if not path.is_absolute():
        path = Path(ad.get("Iwd", ".")) / path
    if str(path) == "/dev/null":
        raise CliError(f"job {job_id} keeps no {'error ' if args.err else ''}output")
    if not path.exists():
        status = STATUS.get(ad.get("JobStatus"), "?")
        raise CliError(f"job {job_id} is {status}: its output is not back yet ({path})")
    return _show(path, follow=False, until=lambda: True)


def _left(tools: Any, job_id: str) -> bool:
    try:
        return not run(tools.q([job_id], attributes=["JobStatus"]))
    except CliError:
        return False


def _show(path: Path, *, follow: bool, until: Any) -> int:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            sys.stdout.write(f.read())
            sys.stdout.flush()
            while follow and not until():
                time.sleep(1)
                sys.stdout.write(f.read())
                sys.stdout.flush()
            sys.stdout.write(f.read())
    except FileNotFoundError:
        raise CliError(f"{path} does not exist (yet)") from None
    return 0


def containers(args: Any) -> int:
    the_site = site()
    if args.ep_config:
        from containers.epconfig import execute_point_config

        print(execute_point_config(the_site.catalogue), end="")
        return 0
    rows = [("NAME", "LABEL", "IMAGE", "")]
    rows += [
        (c.name, c.label, c.image, "(default)" if c.default else "")
        for c in the_site.catalogue.entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=False)) + "  " + row[3])
    print(f"(mode: {the_site.catalogue.mode}; site file: {the_site.source})")
    return 0
