"""The job ad condor_submit makes from one proc's expanded submit commands.

Attributes and their defaults as a real 25.0 pool's ads show them
(``tests/data/htcondor``); sizes with units, booleans and ClassAd
expressions read as condor_submit reads them; the arguments and the
environment in the new syntax through ``localpool.submit.v2syntax``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from localpool.ads import Ad, Expr, parse_value
from localpool.security.authz import settable
from localpool.submit import submit_commands
from localpool.submit.v2syntax import (
    V2SyntaxError,
    is_new_syntax,
    join_words,
    parse_arguments,
    parse_environment,
)

VERSION = "$CondorVersion: 25.0.13 2026-11-21 localpool $"
PLATFORM = "$CondorPlatform: X86_64-Debian_12 $"
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)b?\s*\Z", re.IGNORECASE)
_UNIT = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024, "": None}


class SubmitError(Exception):
    """condor_submit refused the description: what it printed, exit code 1 (``stdout``
    follows "Submitting job(s)")."""

    def __init__(self, stderr: str, stdout: str = "") -> None:
        super().__init__(stderr.strip())
        self.stderr = stderr
        self.stdout = stdout


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
                f"The full arguments you specified were: {stripped}\n"
            ) from None
        return "Arguments", join_words(words)
    return "Args", value


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
        "dag_node_name": "DAGNodeName",
        "submit_event_notes": "SubmitEventNotes",
    }
    for key, attr in simple.items():
        if key in lower:
            ad[attr] = lower[key]
    if "accounting_group" in lower:
        ad["AccountingGroup"] = f"{lower['accounting_group']}.{owner}"
    if lower.get("universe", "").strip().lower() == "scheduler":
        ad["JobUniverse"] = 7  # runs on the access point (DAGMan); the schedd starts it
    if "dagman_log" in lower:  # DAGMan's default node log: every event goes there too
        path = lower["dagman_log"]
        ad["DAGManNodesLog"] = path if os.path.isabs(path) else str(iwd / path)
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
            if name.lower() == "owner" and _unquoted(value) != owner:  # case submit_owner_forged
                raise SubmitError(
                    "\nERROR: Failed to commit job submission into the queue.\n"
                    f"ERROR: Setting owner to {_unquoted(value)} when active owner is {owner} "
                    "is not permitted\n",
                    ".",  # the job's progress dot: made, then refused at the commit
                )
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


def _unquoted(value: str) -> str:
    text = value.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


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
