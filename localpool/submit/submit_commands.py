"""The submit commands localpool knows, and which HTCondor version knows each.

condor_submit warns about a line it did not use (``WARNING: the line
'want_io_proxy = true' was unused by condor_submit. Is it a typo?``, case
``submit_want_io_proxy_9_1``) and otherwise ignores it; the exit code does
not change. A pool started with ``--emulate 9.1`` therefore ignores, with
that warning, the commands 9.1 does not know.

Each entry's version is the oldest HTCondor version we have evidence knows
the command (not necessarily the first that did); the comment says where the
evidence is. Commands we cannot date are not listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

Version = tuple[int, int]
DEFAULT_VERSION = "25.0"

# Documented on the condor_submit page of the HTCondor 8.8 manual, and used in
# the descriptions the 9.1 and 25.0 recording pools accepted without a warning.
_CLASSIC = (  # noqa: SIM905
    "universe executable arguments input output error log getenv environment "
    "initialdir remote_initialdir requirements rank priority notification "
    "request_cpus request_memory request_disk request_gpus should_transfer_files "
    "when_to_transfer_output transfer_input_files transfer_output_files "
    "transfer_executable periodic_hold periodic_hold_reason periodic_hold_subcode "
    "periodic_release periodic_remove on_exit_hold "
    "on_exit_remove accounting_group batch_name max_retries nice_user job_lease_duration "
    "stream_output stream_error leave_in_queue transfer_output_remaps"
).split()
# What condor_submit_dag writes into the DAGMan job's description and DAGMan adds to
# each node's (condor_submit_dag.cpp, dagman_submit.cpp; the condor_submit manual page
# documents remove_kill_sig, copy_to_spool, dag_node_name, dagman_log, submit_event_notes).
_DAGMAN = ["remove_kill_sig", "copy_to_spool", "dag_node_name", "dagman_log", "submit_event_notes"]

# HTCondor also reads these spellings (the job attribute's name) for the same command
# (submit_utils: ``submit_param(SUBMIT_KEY_ShouldTransferFiles, ATTR_SHOULD_TRANSFER_FILES)``);
# batchspawner's CondorSpawner submits ``ShouldTransferFiles``.
ALIASES = {
    "shouldtransferfiles": "should_transfer_files",
    "whentotransferoutput": "when_to_transfer_output",
    "transferexecutable": "transfer_executable",
}

KNOWN: dict[str, Version] = {
    **dict.fromkeys(_CLASSIC, (8, 8)),
    **dict.fromkeys(_DAGMAN, (8, 8)),
    # The container universe page of the V10_0 manual
    # (docs/users-manual/container-universe-jobs.rst in htcondor/htcondor).
    "container_image": (10, 0),
    # Unknown to 9.1.0 (case submit_want_io_proxy_9_1); known to 25.0.13 (case submit_chirp).
    "want_io_proxy": (25, 0),
    # Unknown to 9.1 (condor_submit there warns the line was unused: reported from the
    # real 9.1 pool in the project's issue on many users); 25.0.13 holds jobs over it.
    "allowed_execute_duration": (25, 0),
}


def parse_version(text: str) -> Version:
    """``"9.1"`` or ``"9.1.0"`` as (9, 1)."""
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if not match:
        raise ValueError(f"not an HTCondor version: {text!r} (e.g. 9.1 or 25.0)")
    return int(match.group(1)), int(match.group(2))


def _referenced(name: str, values: Iterable[str]) -> bool:
    """Is the line a macro some other line uses (``$(name)``, ``$F(name)``, ...)?"""
    pattern = re.compile(r"\$[A-Za-z]*\(\s*" + re.escape(name) + r"\s*[):]", re.IGNORECASE)
    return any(pattern.search(v) for v in values)


def unused(raw: Mapping[str, str], version: Version) -> list[str]:
    """The commands of a description that condor_submit of ``version`` would not use."""
    out = []
    for key in raw:
        low = ALIASES.get(key.lower(), key.lower())
        if key.startswith("+") or low.startswith("my."):
            continue
        known = KNOWN.get(low)
        if known is not None and known <= version:
            continue
        others = [v for k, v in raw.items() if k != key]
        if _referenced(key, others):
            continue
        out.append(key)
    return out


def warning(key: str, value: str) -> str:
    return f"WARNING: the line '{key} = {value}' was unused by condor_submit. Is it a typo?\n"
