"""Every HTCondor command condorspawner runs, as small async functions.

Argument lists only, never a shell; the site's run-as-user prefix and extra
environment applied; a timeout on every call. Failures keep their meaning:
a job the schedd does not know (:class:`JobNotFound`) is a different thing
from a schedd that did not answer (:class:`ScheddUnavailable`,
:class:`CondorTimeout`), which callers must treat as "unknown", never as
"the job is gone".
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from condorspawner.processes import communicate_within
from condorspawner.site import SCHEDD_NAME_RE, Pool

_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*\Z")
_JOB_ID_RE = re.compile(r"^\d+(\.\d+)?\Z")
_TERSE_RE = re.compile(r"^(\d+)\.(\d+) - (\d+)\.(\d+)\Z")
_NOT_FOUND_RE = re.compile(r"^Job (\d+(?:\.\d+)?) not found", re.MULTILINE)
_UNAVAILABLE_MARKERS = (
    "Failed to fetch ads",
    "Can't find address",
    "Failed to connect",
    "Failed to end classad message",
    "Can't connect",
    "Unable to locate",
    "Could not contact",
    "Collector has no record",
    "cannot get address of schedd",
    "No such schedd",
    "Unable to send history",
    "SECMAN:2003:",
)
# authentication/authorization refusals (HTCondor's AUTHENTICATE_ERR_*, SECMAN_ERR 2008-2010);
# other SECMAN errors (2003: connection failed) are a schedd that does not answer
AUTH_FAILURE_MARKERS = (
    "AUTHENTICATE:",
    "SECMAN:2008:",
    "SECMAN:2009:",
    "SECMAN:2010:",
    'Received "DENIED"',
)
SCHEDD_AD_ATTRS = (
    "Name",
    "MyAddress",
    "TotalRunningJobs",
    "TotalIdleJobs",
    "TotalHeldJobs",
    "RecentDaemonCoreDutyCycle",
    "LastHeardFrom",
)


class CondorError(RuntimeError):
    """An HTCondor command failed; carries the command, its exit code and stderr."""

    def __init__(
        self, command: Sequence[str], returncode: int | None, stderr: str, message: str = ""
    ) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        lines = stderr.strip().splitlines()
        detail = message or (lines[-1].strip() if lines else "no message")
        super().__init__(f"{command[0]} failed (exit {returncode}): {detail}")


class CondorTimeout(CondorError):
    """The command did not finish in time: the schedd's state is unknown."""

    def __init__(self, command: Sequence[str], timeout: float) -> None:
        super().__init__(command, None, "", f"no answer within {timeout:g} s")
        self.timeout = timeout


class ScheddUnavailable(CondorError):
    """The schedd or collector could not be reached: the jobs' state is unknown."""


class NotAuthorized(CondorError):
    """The schedd answered but did not authenticate or authorize the caller."""


class JobNotFound(CondorError):
    """The schedd answered: it has no such job."""

    def __init__(
        self, command: Sequence[str], returncode: int, stderr: str, job_ids: Sequence[str]
    ) -> None:
        super().__init__(command, returncode, stderr, f"job {', '.join(job_ids)} not found")
        self.job_ids = list(job_ids)


@dataclass(frozen=True)
class SubmitResult:
    """The jobs one ``condor_submit -terse`` made: cluster and first/last proc."""

    cluster: int
    first_proc: int
    last_proc: int

    @property
    def job_ids(self) -> list[str]:
        return [f"{self.cluster}.{p}" for p in range(self.first_proc, self.last_proc + 1)]

    @property
    def job_id(self) -> str:
        return f"{self.cluster}.{self.first_proc}"


def parse_terse(stdout: str) -> SubmitResult:
    """Parse ``condor_submit -terse`` output: ``C.P - C.P``."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    match = _TERSE_RE.match(lines[-1].strip()) if lines else None
    if not match or match.group(1) != match.group(3):
        raise ValueError(f"unexpected condor_submit -terse output: {stdout!r}")
    return SubmitResult(int(match.group(1)), int(match.group(2)), int(match.group(4)))


def parse_json_ads(stdout: str) -> list[dict[str, Any]]:
    """Ads from ``-json`` output; no output at all means no ads (not ``[]``)."""
    if not stdout.strip():
        return []
    ads = json.loads(stdout)
    if not isinstance(ads, list):
        raise ValueError("condor -json output is not a list of ads")
    return ads


def check_job_ids(job_ids: Iterable[str]) -> list[str]:
    """Job ids in HTCondor's form: ``C`` or ``C.P``."""
    ids = [str(j) for j in job_ids]
    for job_id in ids:
        if not _JOB_ID_RE.match(job_id):
            raise ValueError(f"{job_id!r} is not a job id (CLUSTER or CLUSTER.PROC)")
    return ids


@dataclass
class Condor:
    """The HTCondor command-line tools, run with a site's pool settings.

    ``user`` (when given) fills ``{user}`` in the site's ``run_as`` prefix,
    e.g. ``["sudo", "-n", "-u", "{user}"]``, so tools run as that user.
    """

    pool: Pool = field(default_factory=Pool)
    timeout: float | None = None

    def for_schedd(self, name: str | None) -> Condor:
        """The same tools aimed at one schedd (``-name NAME`` on every job command)."""
        if not name:
            return self
        if not SCHEDD_NAME_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not a schedd name")
        return replace(self, pool=replace(self.pool, schedd=name))

    def user_prefix(self, user: str | None) -> list[str]:
        """The site's run-as prefix for ``user`` (empty without one or without a user)."""
        if user is None or not self.pool.run_as:
            return []
        if not _USER_RE.match(user):
            raise ValueError(f"{user!r} is not a user name")
        return [part.replace("{user}", user) for part in self.pool.run_as]

    def command(self, tool: str, args: Sequence[str], user: str | None = None) -> list[str]:
        """The full argument list: run-as prefix, tool, schedd/pool options, args."""
        prefix = self.user_prefix(user)
        location: list[str] = []
        if tool in (
            "condor_submit",
            "condor_q",
            "condor_history",
            "condor_rm",
            "condor_hold",
            "condor_release",
            "condor_vacate_job",
            "condor_ssh_to_job",
            "condor_token_fetch",
        ):
            if self.pool.schedd:
                location += ["-name", self.pool.schedd]
            if self.pool.collector:
                location += ["-pool", self.pool.collector]
        program = os.path.join(self.pool.bin_dir, tool) if self.pool.bin_dir else tool
        return [*prefix, program, *location, *args]

    def environment(self) -> dict[str, str]:
        """The process environment for HTCondor tools: ours plus the site's extras."""
        return {**os.environ, **self.pool.environment}

    async def run(
        self,
        tool: str,
        args: Sequence[str],
        *,
        user: str | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> tuple[str, str]:
        """Run one tool; return (stdout, stderr) or raise a :class:`CondorError`."""
        cmd = self.command(tool, args, user)
        limit = timeout or self.timeout or self.pool.command_timeout
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env=self.environment(),
                start_new_session=True,
            )
        except OSError as err:
            raise ScheddUnavailable(cmd, None, str(err), f"cannot run {cmd[0]}: {err}") from None
        try:
            out, err = await communicate_within(proc, stdin, limit)
        except TimeoutError:
            raise CondorTimeout(cmd, limit) from None
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if proc.returncode != 0:
            raise _classify(cmd, proc.returncode, stderr)
        return stdout, stderr

    # --- the commands -----------------------------------------------------

    async def submit(
        self, submit_file: str, *, user: str | None = None, cwd: str | None = None
    ) -> SubmitResult:
        """``condor_submit -terse FILE``: the jobs it queued."""
        stdout, _ = await self.run("condor_submit", ["-terse", submit_file], user=user, cwd=cwd)
        return parse_terse(stdout)

    async def q(
        self,
        job_ids: Iterable[str] = (),
        *,
        constraint: str | None = None,
        attributes: Sequence[str] = (),
        all_users: bool = False,
        user: str | None = None,
    ) -> list[dict[str, Any]]:
        """``condor_q -json``: ads of the matching jobs still in the queue."""
        args = ["-json", *_query_args(constraint, attributes)]
        if all_users:
            args.append("-allusers")
        stdout, _ = await self.run("condor_q", [*args, *check_job_ids(job_ids)], user=user)
        return parse_json_ads(stdout)

    async def history(
        self,
        job_ids: Iterable[str] = (),
        *,
        constraint: str | None = None,
        attributes: Sequence[str] = (),
        limit: int | None = None,
        user: str | None = None,
    ) -> list[dict[str, Any]]:
        """``condor_history -json``: ads of jobs that have left the queue."""
        args = ["-json", *_query_args(constraint, attributes)]
        if limit is not None:
            args += ["-limit", str(int(limit))]
        stdout, _ = await self.run("condor_history", [*args, *check_job_ids(job_ids)], user=user)
        return parse_json_ads(stdout)

    async def _act(
        self, tool: str, job_ids: Iterable[str], reason: str | None, user: str | None
    ) -> str:
        args = ["-reason", reason] if reason else []
        stdout, _ = await self.run(tool, [*args, *check_job_ids(job_ids)], user=user)
        return stdout

    async def rm(
        self, job_ids: Iterable[str], *, reason: str | None = None, user: str | None = None
    ) -> str:
        """``condor_rm [-reason R] IDS``."""
        return await self._act("condor_rm", job_ids, reason, user)

    async def hold(
        self, job_ids: Iterable[str], *, reason: str | None = None, user: str | None = None
    ) -> str:
        """``condor_hold [-reason R] IDS``."""
        return await self._act("condor_hold", job_ids, reason, user)

    async def vacate(self, job_ids: Iterable[str], *, user: str | None = None) -> str:
        """``condor_vacate_job IDS``: evict (output transfer as the job asks) and requeue."""
        stdout, _ = await self.run("condor_vacate_job", check_job_ids(job_ids), user=user)
        return stdout

    async def schedd_ads(self, constraint: str | None = None) -> list[dict[str, Any]]:
        """``condor_status -schedd -json``: the collector's ads of the pool's schedds."""
        return await self._status(["-schedd"], constraint, SCHEDD_AD_ATTRS)

    async def slot_ads(
        self, constraint: str, attributes: Sequence[str], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """``condor_status -json``: the collector's slot ads (as the hub's own account)."""
        return await self._status([], constraint, attributes, timeout)

    async def _status(
        self,
        kind: list[str],
        constraint: str | None,
        attributes: Sequence[str],
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        args = [*kind, "-json", *_query_args(constraint, attributes)]
        if self.pool.collector:
            args = ["-pool", self.pool.collector, *args]
        stdout, _ = await self.run("condor_status", args, timeout=timeout)
        return parse_json_ads(stdout)

    async def token_fetch(
        self, *, lifetime: int, authz: Sequence[str], user: str | None = None
    ) -> str:
        """``condor_token_fetch -lifetime N -authz A ...`` as ``user``: the token (a secret)."""
        args = ["-lifetime", str(int(lifetime))]
        for level in authz:
            args += ["-authz", level]
        stdout, _ = await self.run("condor_token_fetch", args, user=user)
        token = stdout.strip()
        if token.count(".") != 2 or any(c.isspace() for c in token):
            raise CondorError(["condor_token_fetch"], 0, "", "its output is not a token")
        return token

    async def release(
        self, job_ids: Iterable[str], *, reason: str | None = None, user: str | None = None
    ) -> str:
        """``condor_release [-reason R] IDS``."""
        return await self._act("condor_release", job_ids, reason, user)


def _query_args(constraint: str | None, attributes: Sequence[str]) -> list[str]:
    args = []
    if constraint:
        args += ["-constraint", constraint]
    if attributes:
        args += ["-attributes", ",".join(attributes)]
    return args


def _classify(cmd: Sequence[str], returncode: int, stderr: str) -> CondorError:
    missing = _NOT_FOUND_RE.findall(stderr)
    if missing:
        return JobNotFound(cmd, returncode, stderr, missing)
    if any(marker in stderr for marker in AUTH_FAILURE_MARKERS):
        return NotAuthorized(cmd, returncode, stderr)
    if any(marker in stderr for marker in _UNAVAILABLE_MARKERS):
        return ScheddUnavailable(cmd, returncode, stderr)
    return CondorError(cmd, returncode, stderr)
