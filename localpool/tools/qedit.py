"""``condor_qedit``: set attributes of queued jobs, as HTCondor's tool does.

``condor_qedit [-name N] [-pool P] {cluster | cluster.proc | owner | -constraint EXPR}
ATTR VALUE [ATTR VALUE ...]`` (or ``ATTR=VALUE``). Argument handling,
messages and exit codes follow ``src/condor_tools/qedit.cpp`` (HTCondor 9
onwards) and the schedd's SetAttribute / SetAttributeByConstraint
(``qmgmt.cpp``): the edits are one transaction, all set or none; each set
attribute prints ``Set attribute "A" for N matching jobs.``; a job given by
id that is missing or not the caller's fails with ``Failed to set attribute
"A" for job C.P.``, a cluster, an owner or a constraint that selects nothing,
or a job not the caller's, with ``Failed to set attribute "A" by
constraint: ...`` (qedit prints no other reason). A ``-constraint`` alone
edits only the caller's jobs (``CONDOR_Q_ONLY_MY_JOBS``); root edits any.
Values go through :mod:`localpool.schedd.jobattrs`, the path chirp takes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import classad2

from localpool.ads import Ad, evaluate, is_true
from localpool.schedd import jobattrs
from localpool.schedd.store import Store
from localpool.security.authz import is_super_user, may_modify
from localpool.security.privs import Account

TOOL = "condor_qedit"
USAGE = (
    f"Usage: {TOOL} [-debug] [-name schedd-name] [-pool pool-name]\n"
    "       { cluster | cluster.proc | owner | -constraint constraint }\n"
    "       attribute-name attribute-value [attribute-name attribute-value ...]\n"
    "  attribute-name=attribute-value is the one-argument form; a value is a ClassAd\n"
    "  expression (strings in double quotes: '\"text\"').\n"
)
NOT_SET = "Transaction failed.  No attributes were set.\n"
QUEUE_NOT_SET = "Queue transaction failed.  No attributes were set.\n"
_JOB_ID = re.compile(r"(\d+)(?:\.(\d+))?")


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Abort(Exception):
    """An edit failed: the queue is not written back."""


def _usage(code: int) -> None:
    (sys.stderr if code else sys.stdout).write(USAGE)
    raise _Exit(code)


def _fail(message: str) -> None:
    sys.stderr.write(message)
    raise _Exit(1)


def _option(arg: str, word: str, least: int = 1) -> bool:
    """HTCondor's is_dash_arg_prefix: -w, -wo, ... -word (or --word)."""
    if not arg.startswith("-"):
        return False
    body = arg[2:] if arg.startswith("--") else arg[1:]
    return len(body) >= least and word.startswith(body)


def _job_ids(text: str) -> list[tuple[int, int]]:
    """``8``, ``8.0``, ``8.0,8.1``: (cluster, proc); proc -1 for a whole cluster."""
    ids = []
    for word in re.split(r"[,\s]+", text.strip()):
        match = _JOB_ID.match(word)
        if match:
            proc = match.group(2)
            ids.append((int(match.group(1)), int(proc) if proc is not None else -1))
    return ids


def _jobid_constraint(ids: set[tuple[int, int]]) -> str:
    """qedit's makeJobidConstraint: ``ClusterId == 8 || ( ClusterId == 9 && ProcId == 0 )``."""
    clusters: dict[int, list[int]] = {}
    for cluster, proc in sorted(ids):
        procs = clusters.setdefault(cluster, [])
        if proc >= 0:
            procs.append(proc)
    parts = []
    for cluster, procs in clusters.items():
        if not procs:
            parts.append(f"ClusterId == {cluster} ")
        elif len(procs) == 1:
            parts.append(f"( ClusterId == {cluster} && ProcId == {procs[0]} )")
        else:
            alternatives = " || ".join(f"ProcId == {p} " for p in procs)
            parts.append(f"( ClusterId == {cluster} && ({alternatives}))")
    return "|| ".join(parts)


def _query(ands: list[str]) -> str:
    """GenericQuery::makeQuery of custom AND constraints: ``( (A) && (B) )``."""
    return "( " + " && ".join(f"({a})" for a in ands) + " )" if ands else ""


def _parse(argv: Sequence[str]) -> tuple[set[tuple[int, int]], list[str], bool, dict[str, str]]:
    """(job ids, constraints, only my jobs, {attr: value text}); exits on a usage error."""
    if not argv:
        _usage(1)
    ids: set[tuple[int, int]] = set()
    ands: list[str] = []
    only_mine = True
    bare_is_target = True
    edits: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if _option(arg, "help"):
            _usage(0)
        elif _option(arg, "name") or _option(arg, "pool"):
            i += 1
            if i >= len(argv) or argv[i].startswith("-"):
                what = (
                    "a SCHEDD name"
                    if _option(arg, "name")
                    else "a HTCondor collector name or address"
                )
                _fail(f"{TOOL}: {arg} requires {what} as an argument\n")
        elif _option(arg, "debug"):
            pass
        elif _option(arg, "constraint"):
            i += 1
            if i >= len(argv):
                _fail(f"{TOOL}: {arg} requires a ClassAd expression an argument\n")
            try:
                classad2.ExprTree(argv[i])
            except Exception:
                _fail(f"{TOOL}: invalid constraint: {argv[i]}\n")
            ands.append(argv[i])
            bare_is_target = False
        elif arg.startswith("-"):
            sys.stderr.write(f"{TOOL}: {arg} is not a valid option\n")
            _usage(1)
        elif bare_is_target:
            bare_is_target = False
            only_mine = False
            if arg[0].isdigit():
                ids.update(_job_ids(arg))
                while i + 1 < len(argv) and argv[i + 1][:1].isdigit():
                    i += 1
                    ids.update(_job_ids(argv[i]))
            else:
                ands.append(f'Owner=="{arg}"')
        else:
            attr, equals, value = arg.partition("=")
            attr, value = attr.strip(), value.strip()
            if not equals:
                i += 1
                if i >= len(argv):
                    sys.stderr.write(f"{TOOL} : expression required after attribute {arg}\n")
                    _usage(1)
                value = argv[i]
            if not jobattrs.valid_name(attr):
                _fail(
                    "Update aborted, illegal attribute-name specified for attribute "
                    f'"{attr}".\n{NOT_SET}'
                )
            try:
                jobattrs.parse(attr, value)
            except jobattrs.Refused:
                _fail(f"Update aborted, illegal value for : {attr}\n{NOT_SET}")
            edits[attr] = value
        i += 1
    return ids, ands, only_mine, edits


def _targets(
    ids: set[tuple[int, int]], ands: list[str]
) -> tuple[list[tuple[int, int]], str | None]:
    """Jobs by id, or else the constraint qedit sends (ids with a cluster or a constraint)."""
    if ids and (ands or any(proc < 0 for _, proc in ids)):
        return [], _query([*ands, _jobid_constraint(ids)])
    return sorted(ids), _query(ands) or None


def _matches(ad: Ad, constraint: str) -> bool:
    visible = {k: v for k, v in ad.items() if not k.startswith("Localpool")}
    try:
        return is_true(evaluate(constraint, visible))
    except Exception:
        return False


def _set(
    queue,
    caller: Account,
    jobs: list[tuple[int, int]],
    constraint: str | None,
    only_mine: bool,
    attr: str,
    value: Any,
) -> int:
    """Set one attribute on the selected jobs; the count, or :class:`_Abort` after the message."""
    if jobs:
        for cluster, proc in jobs:
            ad = queue.jobs.get(f"{cluster}.{proc}")
            if ad is None or not may_modify(caller, ad):
                sys.stderr.write(f'Failed to set attribute "{attr}" for job {cluster}.{proc}.\n')
                raise _Abort
            jobattrs.store(ad, attr, value)
        return len(jobs)
    mine_only = only_mine and not is_super_user(caller)
    chosen = [
        ad
        for ad in queue.jobs.values()
        if (not mine_only or ad.get("Owner") == caller.name) and _matches(ad, constraint or "")
    ]
    if not chosen or not all(may_modify(caller, ad) for ad in chosen):
        sys.stderr.write(f'Failed to set attribute "{attr}" by constraint: {constraint}\n')
        raise _Abort
    for ad in chosen:
        jobattrs.store(ad, attr, value)
    return len(chosen)


def condor_qedit(argv: Sequence[str], store: Store, caller: Account) -> int:
    try:
        ids, ands, only_mine, edits = _parse(argv)
        jobs, constraint = _targets(ids, ands)
        if not jobs and not constraint:
            if edits:
                sys.stderr.write(
                    f"{TOOL} : Error - there were no jobs specified.\n"
                    "\tuse -constraint, jobid or owner argument to indicate which jobs to edit\n"
                )
            _usage(1)
        if not edits:
            sys.stderr.write(f"{TOOL} : Error - no attributes specifed.\n")
            _usage(1)
        refused = False
        for attr in sorted(edits):
            try:
                jobattrs.check_name(attr)
            except jobattrs.Refused as err:
                sys.stderr.write(f'Update of {err.reason} attribute "{attr}" is not allowed.\n')
                refused = True
        if refused:
            _fail(NOT_SET)
    except _Exit as done:
        return done.code
    try:
        with store.update() as queue:
            for attr in sorted(edits):
                value = jobattrs.parse(attr, edits[attr])
                count = _set(queue, caller, jobs, constraint, only_mine, attr, value)
                sys.stdout.write(f'Set attribute "{attr}" for {count} matching jobs.\n')
    except _Abort:
        sys.stderr.write(QUEUE_NOT_SET)
        return 1
    return 0
