"""What condor_submit makes of a submit description: one job ad per proc.

The description is parsed with HTCondor's own parser (``htcondor2.Submit``),
which also expands its macros and queue items; this module handles the
queue statement, ``-append``, ``-queue`` and ``-interactive``, and each
proc's ad comes from ``localpool.submit.job_ad``. Failures carry condor_submit's
own messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from localpool.ads import Ad
from localpool.submit import submit_commands
from localpool.submit.job_ad import SubmitError, build_ad

_QUEUE_RE = re.compile(r"^\s*queue\b(.*)$", re.IGNORECASE)
# HTCondor's own interactive job (files/interactive.sub of a real 25.0 pool).
INTERACTIVE_ARGS = (
    "-c 'sleep 180 && while test -d ${_CONDOR_SCRATCH_DIR}/.condor_ssh_to_job_1; "
    "do /bin/sleep 3; done'"
)


@dataclass(frozen=True)
class Submission:
    """A parsed description: the ads of its procs (cluster and proc ids still unset)."""

    procs: list[Ad]
    warnings: list[str]


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
