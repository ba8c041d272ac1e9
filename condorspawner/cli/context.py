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

from condorspawner import job_options
from condorspawner.cli.exits import USAGE, CliError
from condorspawner.condor import Condor, CondorError, JobNotFound, NotAuthorized
from condorspawner.request import JobRequest, RequestError
from condorspawner.site import Site, SiteError, load_site

T = TypeVar("T")


def site() -> Site:
    try:
        return load_site()
    except SiteError as err:
        raise CliError(str(err)) from None


def callers_tools(site: Site, schedd: str | None = None) -> Condor:
    """The HTCondor tools as the caller (no run-as prefix: condorsub runs as its user),
    aimed at ``schedd`` when given.

    Inside a job, HTCondor's own ``_CONDOR_BIN`` finds them when PATH does not.
    """
    bindir = os.environ.get("_CONDOR_BIN")
    if bindir and not shutil.which("condor_submit"):
        os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        return Condor(replace(site.pool, run_as=())).for_schedd(schedd)
    except ValueError as err:  # --name / --schedd
        raise CliError(str(err), USAGE) from None


def schedd_names(site: Site, name: str | None = None) -> list[str | None]:
    """The schedds condorsub covers: ``--name``'s, the site's list, or the collector's
    answer to the site's constraint; [None] for a site with one schedd."""
    from condorspawner.schedds import ScheddChooser, multi

    if name:
        return [name]
    if not multi(site.pool):
        return [None]
    ads = run(ScheddChooser(callers_tools(site)).ads())
    return [str(ad["Name"]) for ad in ads if ad.get("Name")] or list(site.pool.schedds)


def queue_ads(
    site: Site,
    job_ids: list[str],
    attributes: list[str],
    all_users: bool,
    name: str | None = None,
    history: bool = False,
) -> list[dict[str, Any]]:
    """The ads of every schedd condorsub covers, queried at once, each with ``ScheddName``.

    A schedd that does not answer is named on stderr and left out; if none
    answers, that is the error.
    """
    import sys

    names = schedd_names(site, name)

    async def one(schedd: str | None) -> list[dict[str, Any]]:
        tools = callers_tools(site, schedd)
        if history:
            return await tools.history(job_ids, attributes=attributes, limit=len(job_ids) or None)
        return await tools.q(job_ids, attributes=attributes, all_users=all_users)

    async def every() -> list[Any]:
        return await asyncio.gather(*(one(s) for s in names), return_exceptions=True)

    answers = run(every())
    ads: list[dict[str, Any]] = []
    failures = []
    for schedd, answer in zip(names, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, CondorError):
                raise answer
            failures.append((schedd, answer))
            continue
        for ad in answer:
            if schedd is not None:
                ad["ScheddName"] = schedd
        ads += answer
    if failures and len(failures) == len(names):
        raise CliError(_explain(failures[0][1]))
    for schedd, err in failures:
        print(
            f"condorsub: schedd {schedd} does not answer ({err}); its jobs are not shown",
            file=sys.stderr,
        )
    return ads


def locate(site: Site, job_id: str, name: str | None = None) -> Condor:
    """The tools aimed at the schedd that has ``job_id`` (in its queue, else its history)."""
    names = schedd_names(site, name)
    if len(names) == 1:
        return callers_tools(site, names[0])
    attrs = ["ClusterId", "ProcId"]
    holders = {ad["ScheddName"] for ad in queue_ads(site, [job_id], attrs, True)}
    if not holders:
        holders = {ad["ScheddName"] for ad in queue_ads(site, [job_id], attrs, True, history=True)}
    if len(holders) > 1:
        raise CliError(
            f"job {job_id} is on several schedds ({', '.join(sorted(holders))}): "
            "pick one with --name",
            USAGE,
        )
    if not holders:
        raise CliError(f"job {job_id} not found on any schedd")
    return callers_tools(site, holders.pop())


def _explain(err: CondorError) -> str:
    """HTCondor's error, and what to do when a notebook job has no credential."""
    if isinstance(err, NotAuthorized) and os.environ.get("_CONDOR_JOB_AD"):
        if not os.environ.get("_CONDOR_SEC_TOKEN_DIRECTORY"):
            return (
                f"{err}\nThe pool does not know this job's identity: submitting and "
                "querying from a notebook needs a token for the job, which the site gives "
                "by setting notebook.submit_token = true in its site file."
            )
        return f"{err}\nThe job's HTCondor token was refused (expired, or not this pool's)."
    return str(err)


def run(coroutine: Awaitable[T]) -> T:
    """Run one command-layer call; HTCondor's failures become one clear line."""
    try:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    except JobNotFound as err:
        raise CliError(f"job {', '.join(err.job_ids)} not found") from None
    except CondorError as err:
        raise CliError(_explain(err)) from None
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
    options = {o.name: getattr(args, o.name, None) for o in job_options.OPTIONS}
    options["environment"] = {**environment(args.environment), **(extra_env or {})} or None
    try:
        return JobRequest.build(site, **options)
    except RequestError as err:
        flag = job_options.flag_of(err.field)
        raise CliError(f"{flag}: {str(err).split(': ', 1)[1]}", USAGE) from None


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
