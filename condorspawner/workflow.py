"""Workflow files: stages of jobs, run in order, written by hand in TOML.

A stage is a ``[[stage]]`` table; its jobs are ``[[stage.job]]`` tables (or,
for a stage of one job, the job's keys in the stage itself). The jobs of a
stage run side by side; a stage starts when every job of the one before it
has succeeded. A job takes the options of ``condorsub submit``: ``executable``,
``args``, each job option's workflow key (:mod:`condorspawner.job_options`:
``os``, ``cpus``, ``memory``, ``disk``, ``gpus``, ``runtime``, ``requirements``),
``env``, ``files``, ``dirs``, ``count``, plus ``retries``;
``[defaults]`` gives keys every job takes unless it sets its own. Paths are
relative to the workflow file. Every mistake is one line naming the stage
and the job (:class:`WorkflowError`); the rendering into DAGMan's files
happens in ``condorspawner.cli.dag``, through the same templates as
``condorsub submit``.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condorspawner import job_options

OWN_KEYS = ("env", "files", "dirs", "count", "retries")  # a workflow job's own, not options


def job_keys() -> tuple[str, ...]:
    """The keys a job takes: name, executable, args, each job option's, its own."""
    return ("name", "executable", "args", *(o.toml for o in job_options.in_workflow()), *OWN_KEYS)


_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}\Z")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_RETRIES = 10


class WorkflowError(ValueError):
    """A workflow file that cannot run: one line, naming the stage and job."""


@dataclass(frozen=True)
class Job:
    """One job of a stage: ``condorsub submit``'s options, and its DAG node's name."""

    stage: str
    node: str
    executable: str
    name: str = ""  # the job's name within its stage ("" for a stage of one unnamed job)
    args: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()  # (job option name, value) pairs
    env: tuple[str, ...] = ()  # NAME=VALUE, or NAME (this shell's value)
    files: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    count: int = 1
    retries: int = 0


@dataclass(frozen=True)
class Workflow:
    """The stages in order, each a tuple of jobs; ``base`` is the file's directory."""

    name: str
    base: Path
    stages: tuple[tuple[Job, ...], ...]

    @property
    def jobs(self) -> list[Job]:
        return [job for stage in self.stages for job in stage]


def load(path: str | Path) -> Workflow:
    """Read and check a workflow file; raises :class:`WorkflowError` (one line)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkflowError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise WorkflowError(f"{path}: cannot read it ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise WorkflowError(f"{path}: not valid TOML: {err}") from None
    return parse(data, path.resolve().parent, path.stem)


def parse(data: dict[str, Any], base: Path, default_name: str = "workflow") -> Workflow:
    """A workflow from TOML data already read (``load`` reads the file)."""
    unknown = sorted(set(data) - {"name", "defaults", "stage"})
    if unknown:
        raise WorkflowError(
            f"unknown top-level key {unknown[0]!r} (a workflow has name, [defaults], [[stage]])"
        )
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise WorkflowError(
            f"name: {name!r} is not a plain name (letters, digits, '_', '-'; at most 40)"
        )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise WorkflowError("defaults: must be a table ([defaults])")
    bad = sorted(set(defaults) - set(job_keys()) | ({"name"} & set(defaults)))
    if bad:
        raise WorkflowError(f"[defaults]: {bad[0]!r} is not a key a job takes there")
    stages = data.get("stage")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise WorkflowError("no [[stage]] tables: a workflow needs at least one stage")
    out: list[tuple[Job, ...]] = []
    nodes: set[str] = set()
    for number, stage in enumerate(stages, start=1):
        out.append(_stage(stage, number, defaults, nodes))
    return Workflow(name, base, tuple(out))


def _stage(
    stage: dict[str, Any], number: int, defaults: dict[str, Any], nodes: set[str]
) -> tuple[Job, ...]:
    label = stage.get("name", f"stage{number}")
    where = f"stage {label!r}" if isinstance(label, str) else f"stage {number}"
    if not isinstance(label, str) or not _NAME_RE.match(label):
        raise WorkflowError(
            f"{where}: name {label!r} is not a plain name (letters, digits, '_', '-')"
        )
    own = {k: v for k, v in stage.items() if k not in ("name", "job")}
    unknown = sorted(set(own) - set(job_keys()))
    if unknown:
        raise WorkflowError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(job_keys())})")
    tables = stage.get("job")
    if tables is not None and own:
        raise WorkflowError(
            f"{where}: give the job's keys in [[stage.job]] tables or in the stage, not both"
        )
    if tables is None:
        if not own:
            raise WorkflowError(f"{where}: no job (add a [[stage.job]] table with an executable)")
        tables = [own]
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise WorkflowError(f"{where}: 'job' must be [[stage.job]] tables")
    jobs = []
    for index, table in enumerate(tables, start=1):
        job_name = table.get("name", str(index))
        if not isinstance(job_name, str) or not _NAME_RE.match(job_name):
            raise WorkflowError(f"{where}, job {index}: name {job_name!r} is not a plain name")
        node = label if len(tables) == 1 and "name" not in table else f"{label}-{job_name}"
        here = f"{where}, job {job_name!r}" if len(tables) > 1 or "name" in table else where
        if node in nodes:
            raise WorkflowError(f"{here}: the name {node!r} is used twice")
        nodes.add(node)
        named = job_name if len(tables) > 1 or "name" in table else ""
        jobs.append(_job({**defaults, **table}, label, node, here, named))
    return tuple(jobs)


def _job(table: dict[str, Any], stage: str, node: str, where: str, name: str) -> Job:
    table = {k: v for k, v in table.items() if k != "name"}
    unknown = sorted(set(table) - set(job_keys()))
    if unknown:
        raise WorkflowError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(job_keys())})")
    executable = table.get("executable")
    if not isinstance(executable, str) or not executable.strip():
        raise WorkflowError(f"{where}: 'executable' is missing (the program or script to run)")
    args = table.get("args", [])
    if isinstance(args, str):
        args = shlex.split(args)
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        raise WorkflowError(f'{where}: args must be a list of strings, e.g. ["--seed", "7"]')
    values: dict[str, Any] = {}
    for o in job_options.in_workflow():
        value = table.get(o.toml)
        if value is None:
            continue
        if o.limited and (not isinstance(value, str | int) or isinstance(value, bool)):
            raise WorkflowError(f'{where}: {o.toml} must be a number or a string like "4GB"')
        if not o.limited and not isinstance(value, str):
            raise WorkflowError(f"{where}: {o.toml} must be a string")
        values[o.name] = value
    return Job(
        stage=stage,
        node=node,
        name=name,
        executable=executable,
        args=tuple(str(a) for a in args),
        env=_env(table.get("env"), where),
        files=_paths(table.get("files"), "files", where),
        dirs=_paths(table.get("dirs"), "dirs", where),
        count=_whole(table.get("count", 1), "count", 1, 100000, where),
        retries=_whole(table.get("retries", 0), "retries", 0, MAX_RETRIES, where),
        options=tuple(values.items()),
    )


def _env(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        entries = []
        for name, text in value.items():
            if not isinstance(text, str | int | float) or isinstance(text, bool):
                raise WorkflowError(f"{where}: env.{name} must be a string")
            entries.append(f"{name}={text}")
    elif isinstance(value, list) and all(isinstance(e, str) for e in value):
        entries = list(value)
    else:
        raise WorkflowError(f'{where}: env must be a table (env = {{ SEED = "7" }}) or a list')
    for entry in entries:
        if not _ENV_RE.match(entry.partition("=")[0]):
            raise WorkflowError(f"{where}: env: {entry.partition('=')[0]!r} is not a variable name")
    return tuple(entries)


def _paths(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise WorkflowError(f"{where}: {key} must be a list of paths")
    return tuple(value)


def _whole(value: Any, key: str, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WorkflowError(f"{where}: {key} must be a whole number from {low} to {high}")
    return value


def dag_text(workflow: Workflow, submit_file: str = "job.sub") -> str:
    """DAGMan's input file: a JOB per job (its own directory), stage after stage, RETRY."""
    lines = [f"# condorsub workflow {workflow.name}: {len(workflow.stages)} stage(s)"]
    for job in workflow.jobs:
        lines.append(f"JOB {job.node} {submit_file} DIR {job.node}")
    for before, after in zip(workflow.stages, workflow.stages[1:], strict=False):
        parents = " ".join(j.node for j in before)
        children = " ".join(j.node for j in after)
        lines.append(f"PARENT {parents} CHILD {children}")
    lines += [f"RETRY {job.node} {job.retries}" for job in workflow.jobs if job.retries]
    return "\n".join(lines) + "\n"
