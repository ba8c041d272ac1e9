"""DAG input files as DAGMan reads them: JOB, PARENT ... CHILD, RETRY, DONE; rescue files.

The subset of the grammar of the HTCondor manual's "DAGMan Workflows"
chapter that localpool's DAGMan stand-in runs (``localpool.dagman.runner``): one
keyword per line, case-insensitive; ``#`` starts a comment line;
``JOB name submit-file [DIR directory] [NOOP] [DONE]``; ``PARENT p... CHILD
c...``; ``RETRY name|ALL_NODES N [UNLESS-EXIT value]``; ``DONE name`` (the
partial rescue DAG's line). Other DAGMan keywords are refused with the
line that holds them, so a DAG is never run half-understood. Rescue DAGs
are named ``<dag>.rescueNNN`` and written as DAGMan's partial rescue format
(version 2.0.1). Standard library only: the DAGMan process runs under any
account's ``/usr/bin/python3``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

RESCUE_VERSION = "2.0.1"
MAX_RESCUE = 100  # DAGMAN_MAX_RESCUE_NUM's default
_RESCUE_RE = re.compile(r"\.rescue(\d{3})\Z")
_NAME_RE = re.compile(r"^[^\s+]+\Z")
_UNSUPPORTED = {
    "SCRIPT",
    "VARS",
    "PRIORITY",
    "CATEGORY",
    "MAXJOBS",
    "ABORT-DAG-ON",
    "CONFIG",
    "SPLICE",
    "SUBDAG",
    "FINAL",
    "PROVISIONER",
    "SERVICE",
    "PRE_SKIP",
    "SET_JOB_ATTR",
    "ENV",
    "INCLUDE",
    "NODE_STATUS_FILE",
    "JOBSTATE_LOG",
    "DOT",
    "REJECT",
    "SAVE_POINT_FILE",
    "SUBMIT-DESCRIPTION",
}


class DagError(Exception):
    """The DAG file cannot be run: what DAGMan's parser says, with the line."""


@dataclass
class Node:
    """One node: its submit description, where to submit it, retries, state."""

    name: str
    submit: str
    directory: str = ""
    noop: bool = False
    retry_max: int = 0
    unless_exit: int | None = None
    done: bool = False
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class Dag:
    """The nodes of a DAG in file order (dicts keep it)."""

    path: str
    nodes: dict[str, Node] = field(default_factory=dict)


def _error(path: str, number: int, text: str) -> DagError:
    return DagError(f"ERROR: {path} (line {number}): {text}")


def parse(path: str) -> Dag:
    """Read a DAG input file; raises :class:`DagError` naming the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise DagError(f"ERROR: Could not open file {path} for input ({err.strerror})") from None
    dag = Dag(path)
    edges: list[tuple[int, list[str], list[str]]] = []
    retries: list[tuple[int, list[str]]] = []
    dones: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        keyword = words[0].upper()
        if keyword == "JOB":
            _job(dag, path, number, words)
        elif keyword == "PARENT":
            upper = [w.upper() for w in words]
            if "CHILD" not in upper:
                raise _error(path, number, "Expected CHILD token")
            at = upper.index("CHILD")
            parents, children = words[1:at], words[at + 1 :]
            if not parents or not children:
                raise _error(path, number, "PARENT and CHILD each need at least one node")
            edges.append((number, parents, children))
        elif keyword == "RETRY":
            retries.append((number, words))
        elif keyword == "DONE":
            if len(words) != 2:
                raise _error(path, number, "Improper DONE line: DONE nodename")
            dones.append((number, words[1]))
        elif keyword in _UNSUPPORTED:
            raise _error(path, number, f"{words[0]} is not supported by localpool's DAGMan")
        else:
            raise _error(path, number, f"expected JOB, PARENT, RETRY or DONE, got {words[0]!r}")
    for number, parents, children in edges:
        for name in (*parents, *children):
            if name not in dag.nodes:
                raise _error(path, number, f"Unknown Job {name}")
        for p in parents:
            for c in children:
                if c not in dag.nodes[p].children:
                    dag.nodes[p].children.append(c)
                    dag.nodes[c].parents.append(p)
    for number, words in retries:
        _retry(dag, path, number, words)
    for number, name in dones:
        if name not in dag.nodes:
            raise _error(path, number, f"Unknown Job {name}")
        dag.nodes[name].done = True
    _check_cycle(dag)
    return dag


def _job(dag: Dag, path: str, number: int, words: list[str]) -> None:
    if len(words) < 3:
        raise _error(path, number, "Improper JOB line: JOB nodename submitfile [DIR dir]")
    name, submit = words[1], words[2]
    if not _NAME_RE.match(name) or name.upper() in ("PARENT", "CHILD", "ALL_NODES"):
        raise _error(path, number, f"illegal node name {name!r}")
    if name in dag.nodes:
        raise _error(path, number, f"Duplicate job name {name}")
    node = Node(name, submit)
    rest = words[3:]
    while rest:
        word = rest.pop(0).upper()
        if word == "DIR" and rest:
            node.directory = rest.pop(0)
        elif word == "NOOP":
            node.noop = True
        elif word == "DONE":
            node.done = True
        else:
            raise _error(path, number, f"invalid parameter {word!r} on JOB line")
    dag.nodes[name] = node


def _retry(dag: Dag, path: str, number: int, words: list[str]) -> None:
    if len(words) not in (3, 5) or not words[2].isdigit():
        raise _error(path, number, "Improper RETRY line: RETRY nodename N [UNLESS-EXIT value]")
    unless = None
    if len(words) == 5:
        if words[3].upper() != "UNLESS-EXIT" or not re.fullmatch(r"-?\d+", words[4]):
            raise _error(path, number, "expected UNLESS-EXIT value")
        unless = int(words[4])
    targets = list(dag.nodes) if words[1].upper() == "ALL_NODES" else [words[1]]
    for name in targets:
        if name not in dag.nodes:
            raise _error(path, number, f"Unknown Job {name}")
        dag.nodes[name].retry_max = int(words[2])
        dag.nodes[name].unless_exit = unless


def _check_cycle(dag: Dag) -> None:
    state: dict[str, int] = {}
    for start in dag.nodes:
        stack = [(start, iter(dag.nodes[start].children))]
        if state.get(start):
            continue
        state[start] = 1
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[name] = 2
                stack.pop()
            elif state.get(child) == 1:
                raise DagError(f"ERROR: a cycle in the dag through node {child}")
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(dag.nodes[child].children)))


# --- rescue DAGs -----------------------------------------------------------------


def rescue_name(dag_path: str, number: int) -> str:
    return f"{dag_path}.rescue{number:03d}"


def last_rescue(dag_path: str) -> int:
    """The number of the newest ``<dag>.rescueNNN`` (0: none), as FindLastRescueDagNum."""
    found = 0
    for number in range(1, MAX_RESCUE + 1):
        if os.path.exists(rescue_name(dag_path, number)):
            found = number
    return found


def rename_rescues(dag_path: str) -> None:
    """``-force``: every rescue DAG becomes ``<name>.old`` (RenameRescueDagsAfter)."""
    for number in range(1, MAX_RESCUE + 1):
        name = rescue_name(dag_path, number)
        if os.path.exists(name):
            os.replace(name, f"{name}.old")


def read_rescue(path: str) -> list[str]:
    """The DONE nodes of a partial rescue DAG."""
    with open(path, encoding="utf-8") as f:
        return [
            line.split()[1]
            for line in f
            if len(line.split()) == 2 and line.split()[0].upper() == "DONE"
        ]


def write_rescue(dag: Dag, failed: list[str]) -> str:
    """Write the next partial rescue DAG for ``dag``; returns its name."""
    number = min(last_rescue(dag.path) + 1, MAX_RESCUE)
    name = rescue_name(dag.path, number)
    now = time.gmtime()
    done = [n for n in dag.nodes.values() if n.done]
    text = (
        "# Rescue DAG file, created after running\n"
        f"#   the {dag.path} DAG file\n"
        f"# Created {now.tm_mon}/{now.tm_mday}/{now.tm_year} "
        f"{time.strftime('%H:%M:%S', now)} UTC\n"
        f"# Rescue DAG version: {RESCUE_VERSION} (partial)\n"
        "#\n"
        f"# Total number of Nodes: {len(dag.nodes)}\n"
        f"# Nodes premarked DONE: {len(done)}\n"
        f"# Nodes that failed: {len(failed)}\n"
        f"#   {''.join(f'{n},' for n in failed)}<ENDLIST>\n\n"
        + "".join(f"DONE {n.name}\n" for n in done)
    )
    with open(name, "w", encoding="utf-8") as f:
        f.write(text)
    return name
