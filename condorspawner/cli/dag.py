"""condorsub dag: a workflow file rendered into DAGMan's files and run with condor_submit_dag.

Every job is rendered as ``condorsub submit`` renders one (the same
``batch.sub``, checks, limits and helpers) into a directory of its own; one
``workflow.dag`` names them (``JOB``), orders the stages (``PARENT ...
CHILD``) and sets retries (``RETRY``). ``condor_submit_dag -no_submit``
writes the DAGMan job's description and ``condor_submit`` queues it, on the
least loaded schedd that answers when the site has several (as ``condorsub
submit``: the manual's way to send a DAG to a chosen schedd); that schedd is
recorded in the directory. ``--resume`` submits the same DAG again, to the
schedd it ran on: DAGMan then runs its newest rescue file, so what succeeded is
not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from condorspawner import job_options
from condorspawner.cli.context import callers_tools, environment, job_dir, run, site
from condorspawner.cli.exits import FAILED, USAGE, CliError
from condorspawner.cli.submit import input_files, job_command, pack_dir
from condorspawner.render import BatchPayload, Renderer, RenderError
from condorspawner.request import JobRequest, RequestError
from condorspawner.schedds import submit_somewhere
from condorspawner.site import SCHEDD_NAME_RE
from condorspawner.workflow import Job, Workflow, WorkflowError, dag_text, load

DAG_FILE = "workflow.dag"
SCHEDD_FILE = "workflow.schedd"  # the schedd it runs on, when the site has several
DAG_ATTRS = [
    "ClusterId",
    "JobStatus",
    "DAG_NodesTotal",
    "DAG_NodesDone",
    "DAG_NodesQueued",
    "DAG_NodesFailed",
    "DAG_Status",
    "ExitCode",
]


def _workflow_key(field: str) -> str:
    """The workflow file's key a request's field came from (``os`` for container,
    ``env.X`` for environment.X)."""
    name, dot, part = field.partition(".")
    key = "env" if name == "environment" else name
    with contextlib.suppress(KeyError):
        key = job_options.option(name).toml or key
    return f"{key}{dot}{part}"


def _where(job: Job) -> str:
    return f"stage {job.stage!r}" + (f", job {job.name!r}" if job.name else "")


def _render_job(job: Job, the_site: Any, renderer: Renderer, into: Path) -> str:
    """One job's job.sub and wrapper.sh in ``into`` (cwd: the workflow file's directory)."""
    command, exe_files = job_command(job.executable, list(job.args))
    files = input_files(list(job.files), "files: {!r}")
    env = environment(list(job.env))
    names = [Path(d).resolve().name for d in job.dirs]
    if names:
        env["CONDORSUB_DIRS"] = " ".join(names)
    request = JobRequest.build(
        the_site, **dict(job.options), environment=env or None, label=job.node
    )
    into.mkdir(parents=True)
    archives = [str(into / f"{pack_dir(d, into, 'dirs: {!r}')}.dir.tar.gz") for d in job.dirs]
    payload = BatchPayload(
        command=tuple(command), input_files=tuple(exe_files + files + archives), count=job.count
    )
    rendered = renderer.render(request, payload)
    rendered.write(into)
    return rendered.submit


def render(workflow: Workflow, the_site: Any, directory: Path) -> dict[str, str]:
    """Every job's files under ``directory/<node>/`` and ``workflow.dag``; node -> description."""
    renderer = Renderer(the_site)
    submits: dict[str, str] = {}
    with contextlib.chdir(workflow.base):
        for job in workflow.jobs:
            try:
                submits[job.node] = _render_job(job, the_site, renderer, directory / job.node)
            except CliError as err:
                raise CliError(f"{_where(job)}: {err}", err.code) from None
            except RequestError as err:
                field = _workflow_key(err.field)
                raise CliError(
                    f"{_where(job)}: {field}: {str(err).split(': ', 1)[1]}", USAGE
                ) from None
            except RenderError as err:
                raise CliError(f"{_where(job)}: {err}") from None
    (directory / DAG_FILE).write_text(dag_text(workflow))
    return submits


def dag(args: Any) -> int:
    if args.resume:
        if args.file or args.dry_run:
            raise CliError("--resume takes the workflow's directory, not a file to render", USAGE)
        return resume(args)
    if not args.file:
        raise CliError("give a workflow file (or --resume DIR)", USAGE)
    try:
        workflow = load(args.file)
    except WorkflowError as err:
        raise CliError(str(err), USAGE) from None
    the_site = site()
    callers_tools(the_site, args.schedd)  # a bad --schedd name stops here, before any file
    directory = job_dir(workflow.name, workflow.name)
    try:
        submits = render(workflow, the_site, directory)
    except CliError:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    if args.dry_run:
        text = (directory / DAG_FILE).read_text()
        if args.json:
            out = {"dry_run": True, "directory": str(directory), "dag": text, "nodes": submits}
            print(json.dumps(out))
        else:
            print(f"# condorsub dag --dry-run: files in {directory}")
            print(f"# --- {DAG_FILE} ---\n{text}", end="")
            for node, submit in submits.items():
                print(f"# --- {node}/job.sub ---\n{submit}", end="")
        return 0
    return _submit(args, the_site, directory, [j.node for j in workflow.jobs], args.schedd)


def resume(args: Any) -> int:
    """Submit the same DAG again; DAGMan runs its newest rescue file."""
    path = Path(args.resume)
    directory = path if path.is_dir() else path.parent
    if (path.is_file() and path.name != DAG_FILE) or not (directory / DAG_FILE).is_file():
        raise CliError(
            f"--resume {args.resume}: not a workflow directory (no {DAG_FILE}; "
            "condorsub dag printed the directory when it submitted)",
            USAGE,
        )
    if (directory / f"{DAG_FILE}.lock").exists():
        raise CliError(f"the workflow in {directory} is still running (condorsub q)")
    if not sorted(directory.glob(f"{DAG_FILE}.rescue[0-9][0-9][0-9]")):
        raise CliError(f"nothing to resume in {directory}: no rescue file (it has not failed)")
    if _last_exit(directory) == 0:
        raise CliError(f"nothing to resume in {directory}: the workflow finished successfully")
    the_site = site()
    nodes = [
        line.split()[1]
        for line in (directory / DAG_FILE).read_text().splitlines()
        if line.startswith("JOB ")
    ]
    recorded = _recorded_schedd(directory)
    if args.schedd and args.schedd != recorded:
        raise CliError(
            f"the workflow in {directory} ran on schedd {recorded or '(the site default)'}; "
            "--resume goes on there (leave out --schedd)",
            USAGE,
        )
    return _submit(args, the_site, directory.resolve(), nodes, recorded)


def _recorded_schedd(directory: Path) -> str | None:
    """The schedd the workflow ran on (None: submitted on a site with one)."""
    path = directory / SCHEDD_FILE
    try:
        name = path.read_text(errors="replace").strip()  # not ours: the check below says so
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CliError(f"{path}: {err.strerror or err}") from None
    if not SCHEDD_NAME_RE.fullmatch(name):
        raise CliError(f"{path}: {name[:80]!r} is not a schedd name")
    return name


def _last_exit(directory: Path) -> int | None:
    """How DAGMan last exited, from the end of dagman.out (the manual's own test)."""
    try:
        text = (directory / f"{DAG_FILE}.dagman.out").read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"EXITING WITH STATUS (-?\d+)\s*$", text, re.MULTILINE)
    return int(found[-1]) if found else None


def _submit(
    args: Any, the_site: Any, directory: Path, nodes: list[str], schedd: str | None = None
) -> int:
    """DAGMan's description written, then queued on ``schedd`` (else the least loaded)."""
    stdout, _ = run(
        callers_tools(the_site).run(
            "condor_submit_dag", ["-no_submit", DAG_FILE], cwd=str(directory)
        )
    )
    description = f"{DAG_FILE}.condor.sub"
    schedd, result = run(
        submit_somewhere(
            callers_tools(the_site),
            lambda tools: tools.submit(description, cwd=str(directory)),
            chosen=schedd,
        )
    )
    if schedd:
        (directory / SCHEDD_FILE).write_text(f"{schedd}\n")
    tools = callers_tools(the_site, schedd)
    cluster = result.cluster
    out: dict[str, Any] = {
        "cluster": cluster,
        "job_id": f"{cluster}.0",
        "directory": str(directory),
        "dag": str(directory / DAG_FILE),
        "nodes": nodes,
        "resumed": "Running rescue DAG" in stdout,
    }
    if schedd:
        out["schedd"] = schedd
    if not args.json:
        print(f"{cluster}.0", flush=True)
        print(
            f"condorsub: workflow of {len(nodes)} job(s) in {directory}"
            + (f" on schedd {schedd}" if schedd else "")
            + (" (resumed from its rescue file)" if out["resumed"] else ""),
            file=sys.stderr,
        )
    code = 0
    if args.wait:
        final = asyncio.run(_follow(tools, cluster, quiet=args.json))
        code = final.get("ExitCode") if isinstance(final.get("ExitCode"), int) else 1
        out.update(
            exit_code=code,
            nodes_done=final.get("DAG_NodesDone"),
            nodes_failed=final.get("DAG_NodesFailed"),
        )
        rescues = sorted(directory.glob(f"{DAG_FILE}.rescue[0-9][0-9][0-9]"))
        if code != 0:
            out["rescue"] = str(rescues[-1]) if rescues else None
            if not args.json:
                print(
                    f"condorsub: the workflow failed ({final.get('DAG_NodesFailed', '?')} job(s)"
                    f" failed; see {directory / (DAG_FILE + '.dagman.out')}); fix the cause and "
                    f"run: condorsub dag --resume {directory}",
                    file=sys.stderr,
                )
    if args.json:
        print(json.dumps(out))
    return min(code, 255) if code >= 0 else FAILED


async def _follow(tools: Any, cluster: int, quiet: bool) -> dict[str, Any]:
    """Follow the DAGMan job until it leaves the queue; its last ad (from the history)."""
    shown = None
    while True:
        try:
            ads = await tools.q([str(cluster)], attributes=DAG_ATTRS)
        except Exception as err:  # unknown, not gone: ask again
            print(f"condorsub: {err} (trying again)", file=sys.stderr)
            await asyncio.sleep(2)
            continue
        if not ads:
            break
        ad = ads[0]
        line = (
            f"workflow {cluster}: {ad.get('DAG_NodesDone', 0)}/{ad.get('DAG_NodesTotal', '?')} "
            f"done, {ad.get('DAG_NodesQueued', 0)} queued, {ad.get('DAG_NodesFailed', 0)} failed"
        )
        if line != shown and not quiet:
            print(line, file=sys.stderr)
            shown = line
        await asyncio.sleep(1.0)
    for _ in range(10):
        done = await tools.history([f"{cluster}.0"], attributes=DAG_ATTRS)
        if done:
            return done[0]
        await asyncio.sleep(0.5)
    return {}
