"""condorsub submit: a batch job from batch.sub, with the notebook's checks and environment."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from condorspawner.cli.context import callers_tools, job_dir, job_request, run, site
from condorspawner.cli.display import WaitView, print_outputs
from condorspawner.cli.exits import USAGE, CliError
from condorspawner.jobad import COMPLETED, HELD, IDLE, REMOVED, RUNNING, id_of
from condorspawner.render import BatchPayload, Renderer
from condorspawner.request import RequestError
from condorspawner.schedds import submit_somewhere

_DIR_NAME = re.compile(r"^[A-Za-z0-9._-]+\Z")
DONE_STATES = (REMOVED, COMPLETED)


def job_command(executable: str, args: list[str]) -> tuple[list[str], list[str]]:
    """(command in the job, files to transfer for it).

    A relative path is a local file, transferred and run as ./NAME; an
    absolute path or a command name runs as it is on the worker.
    """
    if "/" in executable and not os.path.isabs(executable):
        path = Path(executable)
        if not path.is_file():
            raise CliError(f"executable {executable!r} does not exist", USAGE)
        return [f"./{path.name}", *args], [str(path.resolve())]
    if os.path.isabs(executable):
        if not os.path.exists(executable):
            raise CliError(f"executable {executable!r} does not exist", USAGE)
        return [executable, *args], []
    if shutil.which(executable) is None:
        raise CliError(f"executable {executable!r} is not a command here (give a path)", USAGE)
    return [executable, *args], []


def input_files(entries: list[str], label: str = "-f {}") -> list[str]:
    """The files to send with the job, as absolute paths (``label`` names one in an error)."""
    for entry in entries:
        if not Path(entry).exists():
            raise CliError(f"{label.format(entry)}: no such file", USAGE)
    return [str(Path(entry).resolve()) for entry in entries]


def pack_dir(directory: str, into: Path, label: str = "-d {}") -> str:
    """Pack a -d directory next to the description; returns its name in the job."""
    path = Path(directory)
    if not path.is_dir():
        raise CliError(f"{label.format(directory)}: not a directory", USAGE)
    name = path.resolve().name
    if not _DIR_NAME.match(name):
        raise CliError(
            f"{label.format(directory)}: use a directory name of letters, digits, '.', '_', '-'",
            USAGE,
        )
    with tarfile.open(into / f"{name}.dir.tar.gz", "w:gz") as archive:
        archive.add(path, arcname=name)
    return name


def submit(args: Any) -> int:
    if args.count < 1:
        raise CliError("-N: the count must be at least 1", USAGE)
    the_site = site()
    command, exe_files = job_command(args.executable, list(args.args))
    files = input_files(args.files)
    names = [Path(d).resolve().name for d in args.dirs]
    request = job_request(args, the_site, {"CONDORSUB_DIRS": " ".join(names)} if names else None)
    directory = job_dir(args.label, Path(args.executable).name)
    archives = [str(directory / f"{pack_dir(d, directory)}.dir.tar.gz") for d in args.dirs]
    try:
        payload = BatchPayload(
            command=tuple(command),
            input_files=tuple(exe_files + files + archives),
            count=args.count,
        )
        job = Renderer(the_site).render(request, payload)
    except RequestError as err:
        shutil.rmtree(directory, ignore_errors=True)
        raise CliError(str(err), USAGE) from None
    submit_file = job.write(directory)
    if args.dry_run:
        if args.json:
            print(json.dumps({"dry_run": True, "directory": str(directory), "submit": job.submit}))
        else:
            print(f"# condorsub --dry-run: files in {directory}")
            print(job.submit, end="")
        return 0
    schedd, result = run(
        submit_somewhere(
            callers_tools(the_site, args.schedd),
            lambda tools: tools.submit(str(submit_file), cwd=str(directory)),
            chosen=args.schedd,
        )
    )
    names = outputs(result.job_ids)
    if not args.json:
        print("\n".join(result.job_ids), flush=True)
        print_outputs(directory, names, brief=args.wait)
    codes: dict[str, int] = {}
    if args.wait:
        codes = follow(the_site, result.cluster, len(result.job_ids), args.json, schedd)
        if not args.json:
            print_outputs(directory, names, codes=codes)
    if args.json:
        out: dict[str, Any] = {
            "cluster": result.cluster,
            "job_ids": result.job_ids,
            "directory": str(directory),
            "outputs": {
                job: {"out": str(directory / o), "err": str(directory / e)}
                for job, (o, e) in names.items()
            },
            "log": str(directory / f"job.{result.cluster}.log"),
        }
        if schedd:
            out["schedd"] = schedd
        if args.wait:
            out["exit_codes"] = codes
        print(json.dumps(out))
    return worst(codes) if args.wait and codes else 0


def outputs(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Each job's output and error file names in its job directory (batch.sub's
    ``job.$(Cluster).$(Process).out`` and ``.err``)."""
    return {job: (f"job.{job}.out", f"job.{job}.err") for job in job_ids}


def worst(codes: dict[str, int]) -> int:
    """The exit code --wait ends with: the jobs' largest, capped at 255."""
    return min(max(codes.values()), 255)


def follow(
    the_site: Any, cluster: int, total: int, quiet: bool = False, schedd: str | None = None
) -> dict[str, int]:
    """Follow a cluster until every job has left the queue (or is held); their exit codes."""
    view = WaitView(cluster, total, quiet=quiet)
    try:
        return asyncio.run(_follow(callers_tools(the_site, schedd), cluster, total, view))
    finally:
        view.close()


async def _follow(tools: Any, cluster: int, total: int, view: WaitView) -> dict[str, int]:
    attrs = ["ClusterId", "ProcId", "JobStatus", "HoldReason", "ExitCode", "ExitBySignal"]
    held: dict[str, int] = {}
    while True:
        try:
            ads = await tools.q([str(cluster)], attributes=attrs)
        except Exception as err:  # unknown, not done: try again
            view.note(f"condorsub: {err} (trying again)")
            await asyncio.sleep(2)
            continue
        counts = {"idle": 0, "running": 0, "held": 0}
        for ad in ads:
            status = ad.get("JobStatus")
            key = {IDLE: "idle", RUNNING: "running", HELD: "held"}.get(status)
            if key:
                counts[key] += 1
            if status == HELD:
                job = id_of(ad)
                if job not in held:
                    view.note(f"job {job} is held: {ad.get('HoldReason')}")
                held[job] = 1
        # done: left the queue, or on its way out (completed, removed)
        view.update({**counts, "done": total - sum(counts.values())})
        if all(ad.get("JobStatus") == HELD for ad in ads):
            break
        await asyncio.sleep(1.0)
    done = await tools.history(constraint=f"ClusterId == {cluster}", attributes=attrs)
    codes = {
        id_of(ad): (ad.get("ExitCode") if isinstance(ad.get("ExitCode"), int) else 1) for ad in done
    }
    return {**codes, **held}
