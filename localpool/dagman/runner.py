"""``condor_dagman``: localpool's DAGMan, the scheduler-universe job that runs a DAG.

``condor_submit_dag`` queues it (``localpool.submit.dag_tool``); the pool starts it
on the access point, as its owner, like any job's payload. As the real one
does, it submits each node's description with ``condor_submit`` (the pool's
own submit path, as the owner) once the node's parents are done, adding
``DAGManJobId``, ``DAGNodeName`` and the default node log
(``<dag>.nodes.log``) to each node job; follows the nodes through that
event log; retries failed nodes (``RETRY``); keeps ``DAG_Nodes*`` and
``DAG_Status`` in its own job ad current (``condor_qedit``); writes
``<dag>.dagman.out`` in DAGMan's format; and when a node has failed for
good, or the DAGMan job is removed, writes the partial rescue DAG
``<dag>.rescueNNN`` and exits 1. A later ``condor_submit_dag`` of the same
file runs the newest rescue DAG (``-AutoRescue 1``). Messages follow
``src/condor_dagman`` (``dag.cpp``, ``dagman_main.cpp``) of HTCondor.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from localpool.dagman import dag_file, dagman_io

SCAN_INTERVAL = 0.5  # DAGMAN_USER_LOG_SCAN_INTERVAL (5 s on a real pool; quick here)
STATUS_NAMES = {
    0: "DAG_STATUS_OK",
    1: "DAG_STATUS_ERROR",
    2: "DAG_STATUS_NODE_FAILED",
    3: "DAG_STATUS_ABORT",
    4: "DAG_STATUS_RM",
}
EVENT_NAMES = {
    0: "ULOG_SUBMIT",
    1: "ULOG_EXECUTE",
    4: "ULOG_JOB_EVICTED",
    5: "ULOG_JOB_TERMINATED",
    9: "ULOG_JOB_ABORTED",
    12: "ULOG_JOB_HELD",
    13: "ULOG_JOB_RELEASED",
    33: "ULOG_ATTRIBUTE_UPDATE",
    40: "ULOG_FILE_TRANSFER",
}
_NORMAL_RE = re.compile(r"Normal termination \(return value (-?\d+)\)")
_SIGNAL_RE = re.compile(r"Abnormal termination \(signal (\d+)\)")


@dataclass
class NodeRun:
    """A node's state in this run (DAGMan's Node::status and its job procs)."""

    node: dag_file.Node
    status: str = "unready"  # unready ready queued done failed futile
    cluster: int = 0
    procs_left: int = 0
    idle: int = 0
    held: int = 0
    failed: bool = False
    retval: int = 0
    retries: int = 0
    error: str = ""


class DAGMan:
    """One run of one DAG file."""

    def __init__(self, options: dict[str, Any], tools: str, job_id: str) -> None:
        self.dag_path = options["dag"]
        self.options = options
        self.tools = tools
        self.job_id = job_id
        self.cluster = int(job_id.split(".")[0]) if job_id else 0
        self.out = open(f"{self.dag_path}.dagman.out", "a", encoding="utf-8")  # noqa: SIM115
        self.nodes_log = dagman_io.NodeLog(os.path.abspath(f"{self.dag_path}.nodes.log"))
        self.status = 0
        self.runs: dict[str, NodeRun] = {}
        self.by_cluster: dict[int, NodeRun] = {}
        self.completed_jobs = 0
        self.stop_signal: str | None = None
        self.last_update: tuple[Any, ...] = ()

    # --- output ----------------------------------------------------------------

    def log(self, text: str) -> None:
        stamp = time.strftime("%m/%d/%y %H:%M:%S")
        for line in text.split("\n"):
            self.out.write(f"{stamp} {line}\n")
        self.out.flush()

    def _exec_name(self) -> str:
        return f"condor_scheduniv_exec.{self.job_id or '0.0'}"

    # --- the run ---------------------------------------------------------------

    def run(self) -> int:
        self.log("******************************************************")
        self.log(f"** {self._exec_name()} (CONDOR_DAGMAN) STARTING UP")
        self.log(f"** {os.path.abspath(sys.argv[0])}")
        self.log("** $CondorVersion: 25.0.13 2026-11-21 localpool $")
        self.log(f"** PID = {os.getpid()}")
        self.log("******************************************************")
        self.log(f"DAGMAN_USER_LOG_SCAN_INTERVAL setting: {SCAN_INTERVAL:g}")
        self.log(f"Default node log file is: <{self.nodes_log.path}>")
        lock = self.options.get("lockfile") or f"{self.dag_path}.lock"
        self.log(f"DAG Lockfile will be written to {lock}")
        self.log(f"DAG Input file is {self.dag_path}")
        with open(lock, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        try:
            return self._run()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)

    def _run(self) -> int:
        self.log("Parsing 1 dagfiles")
        self.log(f"Parsing {self.dag_path} ...")
        try:
            self.dag = dag_file.parse(self.dag_path)
        except dag_file.DagError as err:
            self.log(str(err))
            self.log("Failed to parse")
            return self._exit(1)
        rescue = 0
        if self.options.get("autorescue", 1) and not self.options.get("force"):
            rescue = self.options.get("dorescuefrom") or dag_file.last_rescue(self.dag_path)
        if rescue:
            name = dag_file.rescue_name(self.dag_path, rescue)
            self.log(
                f"Found rescue DAG number {rescue}; running {name} in combination with normal "
                "DAG file"
            )
            self.log("***********************************************************************")
            self.log(f"USING RESCUE DAG {name}")
            for done in dag_file.read_rescue(name):
                if done in self.dag.nodes:
                    self.dag.nodes[done].done = True
        self.log(f"Dag contains {len(self.dag.nodes)} total jobs")
        self.log("Bootstrapping...")
        pre_done = sum(n.done for n in self.dag.nodes.values())
        self.log(f"Number of pre-completed nodes: {pre_done}")
        if os.path.exists(self.nodes_log.path):  # a fresh run, not a recovery: a new node log
            os.unlink(self.nodes_log.path)
        for name, node in self.dag.nodes.items():
            self.runs[name] = NodeRun(node, "done" if node.done else "unready")
        self._update_readiness()
        self.log("Registering condor_event_timer...")
        for signame in ("SIGUSR1", "SIGTERM"):
            signal.signal(getattr(signal, signame), self._on_signal)
        self._print_status()
        while True:
            if self.stop_signal:
                return self._removed()
            self._submit_ready()
            if self._read_events():
                self._print_status()
            if not any(r.status in ("ready", "queued") for r in self.runs.values()):
                break
            time.sleep(SCAN_INTERVAL)
        self._print_status()
        failed = [n for n, r in self.runs.items() if r.status == "failed"]
        if not failed and all(r.status == "done" for r in self.runs.values()):
            self.log("All jobs Completed!")
            return self._exit(0)
        self.log("ERROR: the following job(s) failed:")
        for number, name in enumerate(failed):
            run = self.runs[name]
            self.log(
                "---------------------- Job ----------------------\n"
                f"      Node Name: {name}\n"
                f"           Noop: {str(run.node.noop).lower()}\n"
                f"         NodeID: {number}\n"
                "    Node Status: STATUS_ERROR    \n"
                f"Node return val: {run.retval}\n"
                f"          Error: {run.error}\n"
                f"Job Submit File: {run.node.submit}\n"
                f"  HTCondor Job ID: ({run.cluster}.0.0)\n"
                "---------------------------------------\t<END>"
            )
        self.log("Aborting DAG...")
        self._write_rescue(failed)
        return self._exit(1)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_signal = signal.Signals(signum).name

    def _removed(self) -> int:
        self.log(f"Received {self.stop_signal}")
        self.status = 4
        self.log("Aborting DAG...")
        self._write_rescue([n for n, r in self.runs.items() if r.status == "failed"])
        return self._exit(1)

    def _write_rescue(self, failed: list[str]) -> None:
        self.log("Writing Rescue DAG file...")
        for name, run in self.runs.items():
            self.dag.nodes[name].done = run.status == "done"
        name = dag_file.write_rescue(self.dag, failed)
        self.log(f"Rescue DAG written to {name}")

    def _exit(self, code: int) -> int:
        if code == 0:
            self.status = 0
        elif self.status == 0:
            self.status = 1
        self._update_ad(force=True)
        self.log(
            f"**** {self._exec_name()} (condor_DAGMAN) pid {os.getpid()} EXITING WITH STATUS {code}"
        )
        self.out.close()
        return code

    # --- nodes -----------------------------------------------------------------

    def _update_readiness(self) -> None:
        for run in self.runs.values():
            if run.status == "unready" and all(
                self.runs[p].status == "done" for p in run.node.parents
            ):
                run.status = "ready"

    def _submit_ready(self) -> None:
        submitted = 0
        for name, run in self.runs.items():
            if run.status != "ready" or self.stop_signal:
                continue
            self.log(f"Submitting HTCondor Node {name} job(s)...")
            ok, detail = self._condor_submit(run)
            if not ok:
                self.log(f"ERROR: submit attempt failed\nsubmit command was: {detail}")
                run.error = "Job submit failed"
                run.retval = 1
                self._node_failed(run)
                continue
            submitted += 1
        if submitted:
            self.log(f"Just submitted {submitted} job{'s' if submitted > 1 else ''} this cycle...")

    def _condor_submit(self, run: NodeRun) -> tuple[bool, str]:
        got = dagman_io.submit_node(
            self.tools, run.node, self.cluster, self.dag_path, self.nodes_log.path
        )
        if isinstance(got, str):
            return False, got
        count, cluster = got
        for proc in range(count):
            self.log(f"\tassigned HTCondor ID ({cluster}.{proc}.0)")
        run.cluster, run.procs_left, run.idle, run.held = cluster, count, 0, 0
        run.failed, run.status = False, "queued"
        self.by_cluster[cluster] = run
        return True, ""

    def _node_done(self, run: NodeRun) -> None:
        name = run.node.name
        if not run.failed:
            self.log(f"Node {name} job completed")
            run.status = "done"
            self._update_readiness()
            return
        self._node_failed(run)

    def _node_failed(self, run: NodeRun) -> None:
        node = run.node
        if run.retries < node.retry_max and run.retval != node.unless_exit:
            run.retries += 1
            self.log(f"Retrying node {node.name} (retry #{run.retries} of {node.retry_max})...")
            run.status, run.error = "ready", ""
            return
        if node.retry_max > 0:
            run.error += f" (after {run.retries} node retries)"
        run.status = "failed"
        self.status = 2
        self._set_futile(node)

    def _set_futile(self, node: dag_file.Node) -> None:
        for child in node.children:
            if self.runs[child].status == "unready":
                self.runs[child].status = "futile"
                self._set_futile(self.runs[child].node)

    # --- the node log ------------------------------------------------------------

    def _read_events(self) -> bool:
        """New events of the node log; True when any was for one of our nodes."""
        seen = False
        for match, lines in self.nodes_log.new_events():
            seen = self._event(match, lines) or seen
        return seen

    def _event(self, match: re.Match[str], lines: list[str]) -> bool:
        code, cluster, proc, sub = (int(match.group(i)) for i in range(1, 5))
        run = self.by_cluster.get(cluster)
        if run is None or run.status != "queued":
            return False
        year, month, day, clock = match.group(5), match.group(6), match.group(7), match.group(8)
        name = EVENT_NAMES.get(code, f"ULOG_{code:03d}")
        self.log(
            f"Event: {name} for HTCondor Node {run.node.name} ({cluster}.{proc}.{sub}) "
            f"{{{month}/{day}/{year[2:]} {clock}}}"
        )
        if code == 0:
            run.idle += 1
            self.log(f"Number of idle job procs: {self._idle()}")
        elif code == 1:
            run.idle = max(0, run.idle - 1)
            self.log(f"Number of idle job procs: {self._idle()}")
        elif code == 12:
            run.held += 1
        elif code == 13:
            run.held = max(0, run.held - 1)
        elif code in (5, 9):
            self._proc_end(run, code, cluster, proc, sub, "\n".join(lines[1:]))
        return True

    def _proc_end(
        self, run: NodeRun, code: int, cluster: int, proc: int, sub: int, body: str
    ) -> None:
        name = run.node.name
        run.procs_left -= 1
        jid = f"({cluster}.{proc}.{sub})"
        if code == 9:
            self.log(f"Node {name} job proc {jid} failed with status -1.")
            run.failed, run.retval, run.error = True, -1, f"Job proc {jid[1:-1]} aborted"
        else:
            normal, killed = _NORMAL_RE.search(body), _SIGNAL_RE.search(body)
            if normal and int(normal.group(1)) == 0:
                self.completed_jobs += 1
                self.log(f"Node {name} job proc {jid} completed successfully.")
            elif normal:
                value = int(normal.group(1))
                self.log(f"Node {name} job proc {jid} failed with status {value}.")
                if not run.failed:
                    run.error = f"Job proc {jid[1:-1]} failed with status {value}"
                    run.retval = value
                run.failed = True
            else:
                signo = int(killed.group(1)) if killed else 0
                self.log(f"Node {name} job proc {jid} failed with signal {signo}.")
                if not run.failed:
                    run.error, run.retval = (
                        f"Job proc {jid[1:-1]} failed with signal {signo}",
                        -signo,
                    )
                run.failed = True
        if run.failed and run.procs_left > 0:  # one proc failed: the whole cluster goes
            dagman_io.remove_cluster(
                self.tools, run.cluster, self.cluster, f"Node Error: DAG node {name} {jid} failed."
            )
        if run.procs_left <= 0:
            self._node_done(run)

    def _idle(self) -> int:
        return sum(r.idle for r in self.runs.values() if r.status == "queued")

    # --- status ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        by = {s: 0 for s in ("unready", "ready", "queued", "done", "failed", "futile")}
        for run in self.runs.values():
            by[run.status] += 1
        return by

    def _print_status(self) -> None:
        c = self.counts()
        self.log(f"DAG status: {self.status} ({STATUS_NAMES[self.status]})")
        self.log(f"Of {len(self.runs)} nodes total:")
        self.log(" Done     Pre   Queued    Post   Ready   Un-Ready   Failed   Futile")
        self.log("  ===     ===      ===     ===     ===        ===      ===      ===")
        self.log(
            f"{c['done']:5d}   {0:5d}    {c['queued']:5d}   {0:5d}   {c['ready']:5d}      "
            f"{c['unready']:5d}    {c['failed']:5d}    {c['futile']:5d}"
        )
        held = sum(r.held for r in self.runs.values() if r.status == "queued")
        self.log(f"{held} job proc(s) currently held")
        self._update_ad()

    def _update_ad(self, force: bool = False) -> None:
        """DAGMan's own job ad, as dagman_classad.cpp keeps it (condor_qedit as the owner)."""
        if not self.job_id:
            return
        c = self.counts()
        queued = [r for r in self.runs.values() if r.status == "queued"]
        values = {
            "DAG_NodesTotal": len(self.runs),
            "DAG_NodesDone": c["done"],
            "DAG_NodesPre": 0,
            "DAG_NodesQueued": c["queued"],
            "DAG_NodesPost": 0,
            "DAG_NodesReady": c["ready"],
            "DAG_NodesFailed": c["failed"],
            "DAG_NodesUnready": c["unready"],
            "DAG_NodesFutile": c["futile"],
            "DAG_Status": self.status,
            "DAG_InRecovery": 0,
            "DAG_JobsIdle": sum(r.idle for r in queued),
            "DAG_JobsHeld": sum(r.held for r in queued),
            "DAG_JobsRunning": sum(r.procs_left - r.idle - r.held for r in queued),
            "DAG_JobsCompleted": self.completed_jobs,
        }
        state = tuple(values.values())
        if state != self.last_update or force:
            self.last_update = state
            dagman_io.update_ad(self.tools, self.job_id, values)


def main(argv: list[str]) -> int:
    """``condor_dagman -p 0 -f -l . -Lockfile F -AutoRescue 1 -DoRescueFrom 0 -Dag D ...``."""
    options = dagman_io.parse_args(argv[1:])
    if "dag" not in options:
        sys.stdout.write(
            "Usage: condor_dagman -p 0 -f -l . -Dag <NAME.dag> -Lockfile <NAME.dag.lock> "
            "-CsdVersion <version string>\n"
        )
        return 1
    tools = os.path.dirname(os.path.abspath(argv[0]))
    return DAGMan(options, tools, os.environ.get("CONDOR_ID", "")).run()
