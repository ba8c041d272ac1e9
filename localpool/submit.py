"""What condor_submit makes of a submit description: one job ad per proc.

The description is parsed with HTCondor's own parser (``htcondor2.Submit``);
this module only turns its commands into job attributes the way
condor_submit does, and fails with condor_submit's messages.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localpool import submit_commands
from localpool.ads import Ad, Expr, parse_value
from localpool.authz import settable
from localpool.v2syntax import (
    V2SyntaxError,
    is_new_syntax,
    join_words,
    parse_arguments,
    parse_environment,
)

VERSION = "$CondorVersion: 25.0.13 2026-11-21 localpool $"
PLATFORM = "$CondorPlatform: X86_64-Debian_12 $"
_QUEUE_RE = re.compile(r"^\s*queue\b(.*)$", re.IGNORECASE)
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)b?\s*\Z", re.IGNORECASE)
_UNIT = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024, "": None}
# HTCondor's own interactive job (files/interactive.sub of a real 25.0 pool).
INTERACTIVE_ARGS = (
    "-c 'sleep 180 && while test -d ${_CONDOR_SCRATCH_DIR}/.condor_ssh_to_job_1; "
    "do /bin/sleep 3; done'"
)


class SubmitError(Exception):
    """condor_submit refused the description: what it printed, exit code 1."""

    def __init__(self, stderr: str, stdout: str = "") -> None:
        super().__init__(stderr.strip())
        self.stderr = stderr
        self.stdout = stdout


@dataclass(frozen=True)
class Submission:
    """A parsed description: the ads of its procs (cluster and proc ids still unset)."""

    procs: list[Ad]
    warnings: list[str]


def _size(value: str, default_unit_mb: float, what: str) -> int:
    match = _SIZE_RE.match(value)
    if not match:
        raise SubmitError(
            f"\nERROR: {what} must be a number with an optional unit, not '{value}'\n"
        )
    number, unit = match.groups()
    factor = _UNIT[unit.lower()] or default_unit_mb
    return int(float(number) * factor + 0.999999)


def _bool(value: str) -> bool:
    return value.strip().lower() in ("true", "yes", "1", "t", "y")


def _arguments(value: str) -> tuple[str, str]:
    """(attribute, value) for the job ad: Arguments (new syntax) or Args (old)."""
    if is_new_syntax(value):
        try:
            words = parse_arguments(value)
        except V2SyntaxError:
            stripped = value.strip()
            raise SubmitError(
                "ERROR: Unterminated double-quote.\n"
                f"The full arguments you specified were: {stripped}\n",
                "Submitting job(s)",
            ) from None
        return "Arguments", join_words(words)
    return "Args", value


def _split_queue(lines: list[str]) -> tuple[list[str], int | None]:
    for index, line in enumerate(lines):
        if _QUEUE_RE.match(line):
            return lines, index
    return lines, None


def _item_count(qargs: str, items: list[dict[str, str]]) -> tuple[int, list[dict[str, str]]]:
    match = re.match(r"^\s*([0-9]+)?\s*(.*)$", qargs)
    count = int(match.group(1)) if match and match.group(1) else 1
    if match and match.group(2).strip():
        return count, items
    return count, [{}]


def _default_requirements(commands: dict[str, str]) -> str:
    clauses = [
        '(TARGET.Arch == "X86_64")',
        '(TARGET.OpSys == "LINUX")',
        "(TARGET.Disk >= RequestDisk)",
        "(TARGET.Memory >= RequestMemory)",
    ]
    if "request_cpus" in commands:
        clauses.append("(TARGET.Cpus >= RequestCpus)")
    if "request_gpus" in commands:
        clauses.append("(TARGET.GPUs >= RequestGPUs)")
    clauses.append("((TARGET.FileSystemDomain == MY.FileSystemDomain) || (TARGET.HasFileTransfer))")
    return " && ".join(clauses)


def build_ad(
    commands: dict[str, str],
    *,
    iwd: Path,
    submit_file: str,
    host: str,
    owner: str,
    env: dict[str, str] | None = None,
) -> Ad:
    """The job ad condor_submit makes from one proc's expanded commands.

    ``env`` is the submitter's environment (``getenv``). The owner is the
    submitter's account: a description cannot set ``Owner`` or ``User``, nor
    localpool's own attributes (the schedd's immutable attributes).
    """
    aliases = submit_commands.ALIASES
    lower = {aliases.get(k.lower(), k.lower()): v for k, v in commands.items()}
    executable_dir = iwd
    if "initialdir" in lower:  # job files are relative to it; the executable is not
        iwd = (iwd / lower["initialdir"]).resolve()
        if not iwd.is_dir():
            raise SubmitError(f"\nERROR: No such directory: {iwd}\n")
    if "executable" not in lower:
        raise SubmitError("\nERROR: No 'executable' parameter was provided\n")
    ad: Ad = {
        "MyType": "Job",
        "TargetType": "Machine",
        "JobUniverse": 5,
        "Owner": owner,
        "User": f"{owner}@{host}",
        "Iwd": str(iwd),
        "JobStatus": 1,
        "LastJobStatus": 0,
        "JobPrio": 0,
        "JobNotification": 0,
        "NumJobStarts": 0,
        "JobRunCount": 0,
        "NumJobMatches": 0,
        "NumRestarts": 0,
        "NumShadowStarts": 0,
        "NumSystemHolds": 0,
        "NumCkpts": 0,
        "CurrentHosts": 0,
        "MaxHosts": 1,
        "MinHosts": 1,
        "ExitBySignal": False,
        "ExitStatus": 0,
        "FileSystemDomain": host,
        "JobSubmitFile": submit_file,
        "JobSubmitMethod": 0,
        "CondorVersion": VERSION,
        "CondorPlatform": PLATFORM,
        "LeaveJobInQueue": False,
        "JobLeaseDuration": 2400,
        "Rank": 0.0,
        "RemoteWallClockTime": 0.0,
        "CumulativeSlotTime": 0,
        "CommittedTime": 0,
        "BytesSent": 0.0,
        "BytesRecvd": 0.0,
        "In": "/dev/null",
        "Out": "/dev/null",
        "Err": "/dev/null",
        "Environment": "",
        "ShouldTransferFiles": "IF_NEEDED",
        "WhenToTransferOutput": "ON_EXIT",
        "TransferExecutable": True,
        "TransferIn": False,
        "WantIOProxy": False,
        "RequestCpus": 1,
        "RequestDisk": Expr("DiskUsage"),
        "RequestMemory": Expr(
            "ifthenelse(MemoryUsage =!= undefined,MemoryUsage,(ImageSize + 1023) / 1024)"
        ),
    }
    executable = lower["executable"]
    cmd = executable if os.path.isabs(executable) else str(executable_dir / executable)
    transfer_exe = _bool(lower.get("transfer_executable", "true"))
    if not os.path.exists(cmd) and transfer_exe:
        raise SubmitError(f"\nERROR: Executable file {cmd} does not exist\n")
    ad["Cmd"] = cmd
    ad["TransferExecutable"] = transfer_exe
    size_kb = max(1, (os.path.getsize(cmd) + 1023) // 1024) if os.path.exists(cmd) else 1
    ad.update(ImageSize=size_kb, ExecutableSize=size_kb, DiskUsage=size_kb)

    simple = {
        "input": "In",
        "output": "Out",
        "error": "Err",
        "transfer_input_files": "TransferInput",
        "transfer_output_files": "TransferOutput",
        "container_image": "ContainerImage",
        "batch_name": "JobBatchName",
        "should_transfer_files": "ShouldTransferFiles",
        "when_to_transfer_output": "WhenToTransferOutput",
        "accounting_group": "AcctGroup",
    }
    for key, attr in simple.items():
        if key in lower:
            ad[attr] = lower[key]
    if "accounting_group" in lower:
        ad["AccountingGroup"] = f"{lower['accounting_group']}.{owner}"
    if "log" in lower:
        log = lower["log"]
        ad["UserLog"] = log if os.path.isabs(log) else str(iwd / log)
    if "arguments" in lower:
        attr, value = _arguments(lower["arguments"])
        ad[attr] = value
    env_words = []
    if _bool(lower.get("getenv", "false")):  # the submitter's environment, as condor_submit does
        given_env = os.environ if env is None else env
        env_words = [f"{k}={v}" for k, v in given_env.items() if "\n" not in v]
    if "environment" in lower:
        try:
            given = parse_environment(lower["environment"])
        except V2SyntaxError as err:
            raise SubmitError(f"\nERROR: environment: {err}\n") from None
        env_words += [f"{k}={v}" for k, v in given.items()]
    if env_words:
        merged = dict(w.split("=", 1) for w in env_words)
        ad["Environment"] = join_words([f"{k}={v}" for k, v in merged.items()])
    if "remote_initialdir" in lower:  # where the job runs on the execute point (no transfer)
        ad["RemoteIwd"] = lower["remote_initialdir"]
    if "request_memory" in lower:
        ad["RequestMemory"] = _size(lower["request_memory"], 1, "request_memory")
    if "request_disk" in lower:
        ad["RequestDisk"] = _disk_kb(lower["request_disk"])
    for key, attr in (
        ("request_cpus", "RequestCpus"),
        ("request_gpus", "RequestGPUs"),
        ("priority", "JobPrio"),
        ("allowed_execute_duration", "AllowedExecuteDuration"),
    ):
        if key in lower:
            ad[attr] = _integer_or_expr(lower[key], key)
    for key, attr in (("want_io_proxy", "WantIOProxy"),):
        if key in lower:
            ad[attr] = _bool(lower[key])
    for key, attr in (
        ("periodic_hold", "PeriodicHold"),
        ("periodic_hold_reason", "PeriodicHoldReason"),
        ("periodic_hold_subcode", "PeriodicHoldSubCode"),
        ("periodic_remove", "PeriodicRemove"),
        ("periodic_release", "PeriodicRelease"),
    ):
        if key in lower:
            ad[attr] = _expression(lower[key], key)
    default_req = _default_requirements(lower)
    if "requirements" in lower:
        ad["Requirements"] = Expr(
            f"({_expression(lower['requirements'], 'requirements')}) && {default_req}"
        )
    else:
        ad["Requirements"] = Expr(default_req)
    for key, value in commands.items():
        if key.startswith("+") or key[:3].upper() == "MY.":
            name = key[1:] if key.startswith("+") else key[3:]
            if not settable(name):
                continue
            try:
                ad[name] = parse_value(value)
            except ValueError:
                raise SubmitError(
                    f"\nERROR: Parse error in expression: \n\t{name} = {value}\n\t"
                    f"{'^' * len(name)}\n\nERROR: Failed to commit job submission into "
                    "the queue.\n"
                ) from None
    return ad


def _disk_kb(value: str) -> int:
    """request_disk: KiB by default, or with a K/M/G/T unit."""
    match = _SIZE_RE.match(value)
    if not match:
        raise SubmitError(
            f"\nERROR: request_disk must be a number with an optional unit, not '{value}'\n"
        )
    number, unit = match.groups()
    factor = {"": 1, "k": 1, "m": 1024, "g": 1024 * 1024, "t": 1024**3}[unit.lower()]
    return int(float(number) * factor + 0.999999)


def _integer_or_expr(value: str, key: str) -> Any:
    parsed = _expression(value, key)
    return int(parsed) if isinstance(parsed, float) and parsed.is_integer() else parsed


def _expression(value: str, key: str) -> Any:
    try:
        parsed = parse_value(value)
    except ValueError:
        raise SubmitError(f"\nERROR: Parse error in expression: \n\t{key} = {value}\n") from None
    return parsed


def parse(
    text: str,
    *,
    cluster: int,
    submit_file: str,
    iwd: Path,
    owner: str,
    host: str,
    append: list[str] = (),
    queue_override: str | None = None,
    interactive: bool = False,
    env: dict[str, str] | None = None,
    version: submit_commands.Version = (25, 0),
) -> Submission:
    """Parse a description for cluster ``cluster`` as condor_submit of ``version`` does.

    Raises :class:`SubmitError` with condor_submit's own messages; the lines
    that version would not use are ignored and come back as warnings.
    """
    import htcondor2

    lines = text.splitlines()
    lines, queue_at = _split_queue(lines)
    if queue_override is not None:
        if queue_at is not None:
            line_no = queue_at + 1
            raise SubmitError(
                f"\nERROR: on Line {line_no} of {submit_file}: -queue argument conflicts with "
                f"queue statement in submit file\n\nERROR: Failed to parse command file "
                f"(line {line_no}).\n"
            )
        lines = [*lines, f"queue {queue_override}"]
        queue_at = len(lines) - 1
    if queue_at is None:
        if not interactive:
            raise SubmitError(f"\nERROR: no queue statement in {submit_file}\n")
        lines, queue_at = [*lines, "queue"], len(lines)
    lines = [*lines[:queue_at], *append, *lines[queue_at:]]
    if interactive:
        lines = [
            *lines[: queue_at + len(append)],
            "universe = vanilla",
            "executable = /bin/sh",
            f'arguments = "{INTERACTIVE_ARGS}"',
            "transfer_executable = false",
            'environment = "TMOUT=7200"',
            "MY.InteractiveJob = true",
            *lines[queue_at + len(append) :],
        ]
    description = "\n".join(lines) + "\n"
    try:
        sub = htcondor2.Submit(description)
    except Exception:
        line_no = _bad_line(lines)
        raise SubmitError(
            f"\nERROR: on Line {line_no} of {submit_file}: syntax error\n\n"
            f"ERROR: Failed to parse command file (line {line_no}).\n"
        ) from None
    count, items = _item_count(sub.getQArgs(), list(sub.itemdata() or []))
    raw = {k: sub[k] for k in sub.keys()}  # noqa: SIM118 (a Submit, not a dict)
    ignored = submit_commands.unused(raw, version)
    warnings = [submit_commands.warning(k, raw[k]) for k in ignored]
    keys = [k for k in raw if k not in ignored]
    procs = []
    proc = 0
    for item in items:
        for _step in range(count):
            for name, value in (
                ("Process", proc),
                ("ProcId", proc),
                ("Step", _step),
                ("Cluster", cluster),
                ("ClusterId", cluster),
                ("Row", proc),
            ):
                sub[name] = str(value)
            for name, value in item.items():
                sub[name] = value
            commands = {k: sub.expand(k) for k in keys}
            ad = build_ad(
                commands, iwd=iwd, submit_file=submit_file, host=host, owner=owner, env=env
            )
            ad.update(ClusterId=cluster, ProcId=proc)
            procs.append(ad)
            proc += 1
    for ad in procs:
        ad["TotalSubmitProcs"] = len(procs)
    return Submission(procs, warnings)


def _bad_line(lines: list[str]) -> int:
    for index, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _QUEUE_RE.match(stripped):
            continue
        if "=" not in stripped and not re.match(
            r"^(if|else|elif|endif|include|error|warning)\b", stripped, re.IGNORECASE
        ):
            return index
    return len(lines)
