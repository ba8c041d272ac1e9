"""How condorsub draws: rich on a terminal, plain stable lines when piped or with --json.

Everything here takes job ads (a list of dicts, from however many schedds) and
decides nothing about HTCondor. ``rich`` is imported only inside the functions
that draw on a terminal, so ``condorsub --help`` and piped output never load it.

Plain formats (stable, for scripts):

- ``q``: a header line, then one line per job or workflow; columns separated
  by two or more spaces, COMMAND last (it may hold spaces).
- ``submit`` (stderr): ``job directory: DIR`` then ``job ID: OUT ERR`` per job
  (file names inside DIR).
- ``--wait`` (stderr): ``cluster C: I idle, R running, D done, H held`` each
  time a count changes, ``job ID is held: REASON``, ``job ID exited with N``,
  and the job directory lines again at the end.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

STATUS = {
    1: "idle",
    2: "running",
    3: "removed",
    4: "done",
    5: "held",
    6: "transferring",
    7: "suspended",
}
COLUMNS = ("ID", "OWNER", "SUBMITTED", "RUNTIME", "STATUS", "OS", "CPUS", "MEMORY", "COMMAND")
DAG_ATTRS = [
    "DAGManJobId",
    "DAG_NodesTotal",
    "DAG_NodesDone",
    "DAG_NodesFailed",
    "DAG_NodesQueued",
    "DAG_NodesReady",
    "DAG_Status",
    "GlobalJobId",
]
_STYLE = {"idle": "yellow", "running": "green", "held": "bold red", "done": "dim"}


@dataclass(frozen=True)
class Row:
    """One line of ``q``: its cells, how deep it sits under a workflow, its status word."""

    cells: tuple[str, ...]
    depth: int = 0
    workflow: bool = False

    @property
    def status(self) -> str:
        return self.cells[4]


def _schedd(ad: dict[str, Any]) -> str:
    # a cluster number is unique per schedd only: the schedd is GlobalJobId's first part
    return str(ad.get("GlobalJobId", "")).split("#", 1)[0]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def is_workflow(ad: dict[str, Any]) -> bool:
    """A DAGMan job: it carries DAGMan's node counts (or runs condor_dagman)."""
    return "DAG_NodesTotal" in ad or Path(str(ad.get("Cmd", ""))).name == "condor_dagman"


def workflow_counts(dag: dict[str, Any], nodes: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Node counts of one workflow: done and failed from DAGMan's own attributes,
    running/idle/held from its node jobs in the queue (or DAGMan's queued count
    when none of them were asked for), waiting = not submitted yet."""
    nodes = list(nodes)
    counts = {
        "total": _int(dag.get("DAG_NodesTotal")),
        "done": _int(dag.get("DAG_NodesDone")),
        "running": 0,
        "idle": 0,
        "held": 0,
        "failed": _int(dag.get("DAG_NodesFailed")),
        "queued": 0,
    }
    if nodes:
        for node in nodes:
            key = {1: "idle", 2: "running", 5: "held"}.get(node.get("JobStatus"))
            if key:
                counts[key] += 1
        in_queue = counts["running"] + counts["idle"] + counts["held"]
    else:
        counts["queued"] = in_queue = _int(dag.get("DAG_NodesQueued"))
    counts["waiting"] = max(counts["total"] - counts["done"] - counts["failed"] - in_queue, 0)
    return counts


def _workflow_text(dag: dict[str, Any], counts: dict[str, int]) -> str:
    name = dag.get("JobBatchName") or _dag_file(dag) or f"cluster {dag.get('ClusterId')}"
    parts = [
        f"{counts['done']}/{counts['total']} done",
        f"{counts['running']} running",
        f"{counts['idle']} idle",
        f"{counts['failed']} failed",
    ]
    parts += [f"{counts[k]} {k}" for k in ("held", "queued", "waiting") if counts[k]]
    if _int(dag.get("DAG_Status")):
        parts.append(f"DAG status {dag['DAG_Status']}")
    return f"DAG {name}: " + ", ".join(parts)


def _dag_file(ad: dict[str, Any]) -> str:
    from condorspawner.quoting import split_v2

    words = split_v2(ad["Arguments"]) if ad.get("Arguments") else ad.get("Args", "").split()
    for flag, value in itertools.pairwise(words):
        if flag.lower() == "-dag":
            return Path(value).name
    return ""


def runtime(ad: dict[str, Any], now: float) -> str:
    """Wall-clock time used so far, H:MM:SS (the current run included)."""
    seconds = float(ad.get("RemoteWallClockTime") or 0)
    if ad.get("JobStatus") == 2 and isinstance(ad.get("JobCurrentStartDate"), int):
        seconds += now - ad["JobCurrentStartDate"]
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def command(ad: dict[str, Any]) -> str:
    """The user's command (condorsub's jobs run it through wrapper.sh)."""
    from condorspawner.quoting import split_v2

    words = split_v2(ad["Arguments"]) if ad.get("Arguments") else ad.get("Args", "").split()
    if Path(ad.get("Cmd", "")).name == "wrapper.sh" and words:
        return " ".join(words)
    return " ".join([Path(ad.get("Cmd", "")).name, *words])


def _cells(ad: dict[str, Any], now: float, what: str) -> tuple[str, ...]:
    memory = ad.get("RequestMemory")
    return (
        f"{ad.get('ClusterId')}.{ad.get('ProcId')}",
        str(ad.get("Owner", "")),
        time.strftime("%m/%d %H:%M", time.localtime(ad.get("QDate", 0))),
        runtime(ad, now),
        STATUS.get(ad.get("JobStatus"), "?"),
        str(ad.get("ContainerOS", "-")),
        str(ad.get("RequestCpus", "")),
        f"{memory}MB" if isinstance(memory, int) else "-",
        what,
    )


def queue_rows(ads: list[dict[str, Any]], *, nodes: bool, now: float | None = None) -> list[Row]:
    """The lines of ``q``: each workflow as one line (its DAGMan job with node
    counts) in place of its node jobs; with ``nodes``, the node jobs beneath it."""
    now = time.time() if now is None else now
    order = sorted(ads, key=lambda a: (_schedd(a), _int(a.get("ClusterId")), _int(a.get("ProcId"))))
    dags = {(_schedd(a), _int(a.get("ClusterId"))): a for a in order if is_workflow(a)}
    children: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in dags}
    top = []
    for ad in order:
        parent = (_schedd(ad), _int(ad.get("DAGManJobId")))
        if (
            "DAGManJobId" in ad
            and parent in children
            and parent
            != (
                _schedd(ad),
                _int(ad.get("ClusterId")),
            )
        ):
            children[parent].append(ad)
        else:
            top.append(ad)
    rows: list[Row] = []
    seen: set[int] = set()

    def emit(ad: dict[str, Any], depth: int) -> None:
        if id(ad) in seen:  # a malformed DAGManJobId loop: show each ad once
            return
        seen.add(id(ad))
        key = (_schedd(ad), _int(ad.get("ClusterId")))
        if is_workflow(ad):
            kids = children.get(key, [])
            text = _workflow_text(ad, workflow_counts(ad, kids))
            rows.append(Row(_cells(ad, now, text), depth, workflow=True))
            for kid in kids if nodes else ():
                emit(kid, depth + 1)
        else:
            rows.append(Row(_cells(ad, now, command(ad)[:60]), depth))

    for ad in top:
        emit(ad, 0)
    return rows


def print_queue(
    ads: list[dict[str, Any]],
    *,
    nodes: bool = False,
    terminal: bool | None = None,
    console: Any = None,
    now: float | None = None,
) -> None:
    """``condorsub q``: a rich table on a terminal, plain columns otherwise."""
    rows = queue_rows(ads, nodes=nodes, now=now)
    if terminal is None:
        terminal = console is not None or sys.stdout.isatty()
    if not terminal:
        _plain_queue(rows, sys.stdout)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    if not rows:
        console.print("(no jobs)", style="dim")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in COLUMNS:
        table.add_column(name, no_wrap=name != "COMMAND", overflow="fold")
    for row in rows:
        cells = [Text(c) for c in row.cells]
        cells[4].stylize(_STYLE.get(row.status, ""))
        if row.depth:
            cells[0] = Text("  " * (row.depth - 1) + "└ " + row.cells[0], style="dim")
        if row.workflow:
            cells[8].stylize("bold")
        table.add_row(*cells)
    console.print(table)


def _plain_queue(rows: list[Row], out: TextIO) -> None:
    lines = [COLUMNS, *((*r.cells[:8], "|- " * r.depth + r.cells[8]) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS) - 1)]
    for line in lines:
        cells = "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False))
        print(cells + "  " + line[-1], file=out)
    if not rows:
        print("(no jobs)", file=out)


# --- submit and --wait ---------------------------------------------------------


def count_line(cluster: int, counts: dict[str, int]) -> str:
    """The plain --wait line (stable for scripts)."""
    return (
        f"cluster {cluster}: {counts['idle']} idle, {counts['running']} running, "
        f"{counts['done']} done, {counts['held']} held"
    )


class WaitView:
    """What --wait shows while it follows a cluster: a rich live progress bar on
    a terminal, one plain line per change otherwise, nothing with --json."""

    def __init__(
        self,
        cluster: int,
        total: int,
        *,
        quiet: bool = False,
        terminal: bool | None = None,
        console: Any = None,
    ) -> None:
        self.cluster, self.total, self.quiet = cluster, total, quiet
        self.shown = ""
        self.progress: Any = None
        if terminal is None:
            terminal = console is not None or sys.stderr.isatty()
        self.terminal = terminal and not quiet
        if self.terminal:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.console = console or Console(stderr=True)
            self.progress = Progress(
                TextColumn("[bold]cluster {task.fields[cluster]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "[yellow]{task.fields[idle]} idle[/] · [green]{task.fields[running]} "
                    "running[/] · {task.fields[done]} done · [red]{task.fields[held]} held[/]"
                ),
                TimeElapsedColumn(),
                console=self.console,
                refresh_per_second=2,  # the clock's pace; a terminal over a websocket too
            )
            self.task: Any = None

    def update(self, counts: dict[str, int]) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            if self.task is None:  # the bar appears with the first real counts
                self.task = self.progress.add_task(
                    "wait",
                    total=self.total,
                    completed=counts["done"],
                    cluster=self.cluster,
                    **counts,
                )
                self.progress.start()
            self.progress.update(self.task, completed=counts["done"], **counts)
            return
        line = count_line(self.cluster, counts)
        if line != self.shown:
            print(line, file=sys.stderr, flush=True)
            self.shown = line

    def note(self, text: str) -> None:
        """A line above the bar (a hold, a failed query)."""
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def print_outputs(
    directory: Path,
    outputs: dict[str, tuple[str, str]],
    *,
    codes: dict[str, int] | None = None,
    brief: bool = False,
    terminal: bool | None = None,
    console: Any = None,
) -> None:
    """Where each job's output lands (stderr): the job directory, then per job its
    output and error file names; with ``codes``, each job's exit code first.
    ``brief`` (before --wait's bar, which ends with the table): on a terminal,
    the directory alone."""
    if terminal is None:
        terminal = console is not None or sys.stderr.isatty()
    if not terminal:
        for job, code in sorted((codes or {}).items()):
            print(f"job {job} exited with {code}", file=sys.stderr)
        print(f"job directory: {directory}", file=sys.stderr)
        for job, (out, err) in outputs.items():
            print(f"job {job}: {out} {err}", file=sys.stderr)
        sys.stderr.flush()
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console(stderr=True)
    # the path whole on one line, never wrapped or cut: it is there to be copied
    line = Text.assemble(("job directory: ", "bold"), str(directory))
    if brief:
        console.print(line, soft_wrap=True, highlight=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("JOB", no_wrap=True)
    if codes is not None:
        table.add_column("EXIT", no_wrap=True)
    table.add_column("OUTPUT", no_wrap=True)
    table.add_column("ERRORS", no_wrap=True)
    for job, (out, err) in outputs.items():
        if codes is None:
            table.add_row(job, out, err)
        else:
            code = codes.get(job)
            style = "green" if code == 0 else "bold red"
            table.add_row(job, Text("?" if code is None else str(code), style=style), out, err)
    console.print(table)
    console.print(line, soft_wrap=True, highlight=False)
