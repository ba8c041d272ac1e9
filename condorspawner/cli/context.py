"""What every condorsub command needs: the site, the HTCondor tools, the user's request."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from condorspawner.cli.exits import USAGE, CliError
from condorspawner.condor import Condor, CondorError, JobNotFound
from condorspawner.request import JobRequest, RequestError
from condorspawner.site import Site, SiteError, load_site

T = TypeVar("T")


def site() -> Site:
    try:
        return load_site()
    except SiteError as err:
        raise CliError(str(err)) from None


def condor(site: Site) -> Condor:
    """The HTCondor tools as the caller (no run-as prefix: condorsub runs as its user).

    Inside a job, HTCondor's own ``_CONDOR_BIN`` finds them when PATH does not.
    """
    bindir = os.environ.get("_CONDOR_BIN")
    if bindir and not shutil.which("condor_submit"):
        os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    return Condor(replace(site.pool, run_as=()))


def run(coroutine: Awaitable[T]) -> T:
    """Run one command-layer call; HTCondor's failures become one clear line."""
    try:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    except JobNotFound as err:
        raise CliError(f"job {', '.join(err.job_ids)} not found") from None
    except CondorError as err:
        raise CliError(str(err)) from None
    except ValueError as err:  # malformed job ids
        raise CliError(str(err), USAGE) from None


def environment(entries: list[str]) -> dict[str, str]:
    """-e NAME=VALUE, or -e NAME to pass this shell's value on."""
    env = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep:
            if name not in os.environ:
                raise CliError(f"-e {name}: not set in this environment", USAGE)
            value = os.environ[name]
        env[name] = value
    return env


def job_request(args: Any, site: Site, extra_env: dict[str, str] | None = None) -> JobRequest:
    """The user's flags as a JobRequest: the same checks and messages as the notebook form."""
    try:
        return JobRequest.build(
            site,
            cpus=args.cpus,
            memory=args.memory,
            disk=args.disk,
            gpus=args.gpus,
            runtime=args.runtime,
            container=args.container,
            environment={**environment(args.env), **(extra_env or {})} or None,
            requirements=args.requirements,
            label=args.label,
        )
    except RequestError as err:
        field = {"container": "--os", "label": "--name"}.get(err.field, f"--{err.field}")
        raise CliError(f"{field}: {str(err).split(': ', 1)[1]}", USAGE) from None


def job_dir(label: str, name: str) -> Path:
    """A fresh directory for one submission's files and outputs."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", label or name)[:40]
    # absolute (a notebook's <work>/condorsub-jobs), ~/..., or relative to here
    base = Path(os.environ.get("CONDORSUB_JOBS") or "condorsub-jobs").expanduser()
    for n in range(100):
        candidate = base / f"{stamp}-{safe}" if n == 0 else base / f"{stamp}-{safe}-{n}"
        try:
            candidate.mkdir(parents=True)
            return candidate.resolve()
        except FileExistsError:
            continue
    raise CliError(f"cannot make a job directory under {base}")
