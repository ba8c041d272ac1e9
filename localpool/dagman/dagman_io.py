"""What localpool's DAGMan says to the pool: node submissions, its job ad, the node log.

``localpool.dagman.runner`` decides; this module holds its dealings with the
outside, as the real DAGMan's ``dagman_submit.cpp`` (the ``condor_submit``
command line of a node), ``dagman_classad.cpp`` (the ``DAG_*`` attributes
of the DAGMan job) and the node-log reader do. Standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping
from typing import Any

NODES_MASK = "0,1,2,4,5,7,9,10,11,12,13,16,17,24,27,35,36"
EVENT_RE = re.compile(r"^(\d{3}) \((\d+)\.(\d+)\.(\d+)\) (\d{4})-(\d\d)-(\d\d) (\S+) ")
_SUBMITTED_RE = re.compile(r"(\d+) job\(s\) submitted to cluster (\d+)\.")


def submit_node(
    tools: str, node: Any, dagman_cluster: int, dag_path: str, nodes_log: str
) -> tuple[int, int] | str:
    """``condor_submit`` a node's description as DAGMan does: (procs, cluster), or why not."""
    cmd = [
        os.path.join(tools, "condor_submit"),
        "-a",
        f"dag_node_name = {node.name}",
        "-a",
        f"+DAGManJobId = {dagman_cluster}",
        "-batch-name",
        f"{os.path.basename(dag_path)}+{dagman_cluster}",
        "-a",
        f"submit_event_notes = DAG Node: {node.name}",
        "-a",
        f"dagman_log = {nodes_log}",
        "-a",
        f'+DAGManNodesMask = "{NODES_MASK}"',
        "-a",
        "priority = 0",
        "-a",
        f'+DAGParentNodeNames = "{",".join(node.parents)}"',
        "-a",
        "notification = never",
        node.submit,
    ]
    try:
        done = subprocess.run(
            cmd, cwd=node.directory or ".", capture_output=True, text=True, check=False
        )
    except OSError as err:
        return f"{' '.join(cmd)} ({err})"
    match = _SUBMITTED_RE.search(done.stdout)
    if done.returncode != 0 or not match:
        return " ".join(cmd) + "\n" + done.stderr.strip()
    return int(match.group(1)), int(match.group(2))


def remove_cluster(tools: str, cluster: int, dagman_cluster: int, reason: str) -> None:
    """``condor_rm CLUSTER -const DAGManJobId==N -reason R`` (Dag::RemoveBatchJob)."""
    subprocess.run(
        [
            os.path.join(tools, "condor_rm"),
            str(cluster),
            "-const",
            f"DAGManJobId=={dagman_cluster}",
            "-reason",
            reason,
        ],
        capture_output=True,
        check=False,
    )


def update_ad(tools: str, job_id: str, values: Mapping[str, int]) -> None:
    """Set DAGMan's ``DAG_*`` attributes in its own job ad (``condor_qedit``, as its owner)."""
    args = [os.path.join(tools, "condor_qedit"), job_id]
    for key, value in values.items():
        args += [key, str(value)]
    args += ["DAG_AdUpdateTime", str(int(time.time()))]
    subprocess.run(args, capture_output=True, check=False)


class NodeLog:
    """The default node log, read as it grows: complete events only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0

    def new_events(self) -> list[tuple[re.Match[str], list[str]]]:
        """(header match, lines) of each event appended since the last call."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"...\n")
        if end < 0:
            return []
        self.offset += end + 4
        out = []
        for event in data[: end + 4].decode("utf-8", errors="replace").split("...\n"):
            lines = event.strip("\n").split("\n")
            match = EVENT_RE.match(lines[0]) if lines and lines[0] else None
            if match:
                out.append((match, lines))
        return out


def parse_args(argv: list[str]) -> dict[str, Any]:
    """condor_dagman's command line (the arguments condor_submit_dag writes)."""
    options: dict[str, Any] = {}
    with_value = {"-lockfile", "-autorescue", "-dorescuefrom", "-dag", "-csdversion", "-dagman"}
    with_value |= {"-p", "-l", "-debug", "-maxidle", "-maxjobs", "-maxpre", "-maxpost"}
    with_value |= {"-notification", "-outfile_dir", "-priority", "-batch-name"}
    i = 0
    while i < len(argv):
        arg = argv[i].lower()
        if arg in with_value and i + 1 < len(argv):
            value = argv[i + 1]
            key = arg[1:]
            if key in ("autorescue", "dorescuefrom"):
                options[key] = int(value) if value.isdigit() else 0
            elif key != "dag" or "dag" not in options:
                options[key] = value
            i += 2
            continue
        if arg == "-force":
            options["force"] = True
        i += 1
    return options
