"""condorsub: batch jobs, interactive shells and tunnels on the pool, from the notebook's templates.

Only argparse and the exit codes are imported here, so ``condorsub --help``
starts fast; each subcommand imports what it needs. Exit codes: 0 success, 1 a failed
operation, 2 bad usage or input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys

from condorspawner.cli.exits import CliError


def _resources(p: argparse.ArgumentParser) -> None:
    """A flag for each job option (:mod:`condorspawner.job_options`)."""
    from condorspawner import job_options

    for o in job_options.OPTIONS:
        flags = [o.short, o.flag] if o.short else [o.flag]
        many = o.kind == job_options.ENVIRONMENT  # -e A=1 -e B=2
        p.add_argument(
            *flags,
            dest=o.name,
            metavar=o.metavar,
            help=o.flag_help,
            **({"action": "append", "default": []} if many else {}),
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="condorsub",
        description="Batch jobs, interactive shells and tunnels on the HTCondor pool, with the "
        "same container choice, limits and environment as the notebooks.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("submit", help="submit a batch job")
    _resources(s)
    s.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="FILE",
        help="transfer FILE into the job's directory",
    )
    s.add_argument(
        "-d",
        "--dir",
        dest="dirs",
        action="append",
        default=[],
        metavar="DIR",
        help="transfer DIR (packed here, unpacked in the job; $CONDORSUB_DIR_<NAME>)",
    )
    s.add_argument("-N", "--count", type=int, default=1, metavar="COUNT", help="copies")
    s.add_argument("--schedd", metavar="NAME", help="this schedd (default: the least loaded)")
    s.add_argument("--dry-run", action="store_true", help="write the files, submit nothing")
    s.add_argument("--wait", action="store_true", help="follow the jobs until they end")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("executable")
    s.add_argument("args", nargs=argparse.REMAINDER)

    w = sub.add_parser("dag", help="a workflow: stages of jobs, run in order (DAGMan)")
    w.add_argument(
        "file", nargs="?", metavar="FILE", help="the workflow file (TOML, see docs/condorsub.md)"
    )
    w.add_argument("--resume", metavar="DIR", help="go on with a failed workflow (its rescue file)")
    w.add_argument("--schedd", metavar="NAME", help="this schedd (default: the least loaded)")
    w.add_argument("--dry-run", action="store_true", help="write the files, submit nothing")
    w.add_argument("--wait", action="store_true", help="follow the workflow until it ends")
    w.add_argument("--json", action="store_true", help="machine-readable output")

    q = sub.add_parser("q", help="your jobs in the queue")
    q.add_argument("job_ids", nargs="*", metavar="JOBID")
    q.add_argument("--all", action="store_true", help="everybody's jobs")
    q.add_argument("--json", action="store_true", help="the raw job ads")
    q.add_argument(
        "--nodes", action="store_true", help="a workflow's node jobs too, not only its one line"
    )
    q.add_argument("--name", metavar="SCHEDD", help="one schedd only (default: all the site's)")

    for action in ("hold", "release", "rm"):
        a = sub.add_parser(action, help=f"{action} jobs")
        a.add_argument("job_ids", nargs="+", metavar="JOBID")
        a.add_argument("--reason", metavar="TEXT")
        a.add_argument("--name", metavar="SCHEDD", help="the job's schedd (found when not given)")

    lg = sub.add_parser("logs", help="a job's output, error output or event log")
    lg.add_argument("job_id", metavar="JOBID")
    which = lg.add_mutually_exclusive_group()
    which.add_argument("--err", action="store_true", help="the error output")
    which.add_argument("--events", action="store_true", help="the event log")
    lg.add_argument("--follow", action="store_true", help="keep following a running job")
    lg.add_argument("--name", metavar="SCHEDD", help="the job's schedd (found when not given)")

    sh = sub.add_parser("shell", help="an interactive shell on a worker, in the chosen OS")
    _resources(sh)

    t = sub.add_parser("tunnel", help="forward a web service in a job to 127.0.0.1 here")
    t.add_argument("job_id", metavar="JOBID")
    t.add_argument("remote_port", type=int, metavar="REMOTE_PORT")
    t.add_argument("--local-port", type=int, default=0, metavar="N")

    r = sub.add_parser("ssh", help="a shell or a command in a running job (condor_ssh_to_job)")
    r.add_argument("job_id", metavar="JOBID")
    r.add_argument("remote_command", nargs=argparse.REMAINDER, metavar="COMMAND")

    sc = sub.add_parser(
        "ssh-config", help="ssh/scp/sftp/rsync and editors into running jobs: ssh condor-JOBID"
    )
    sc.add_argument(
        "--write",
        nargs="?",
        const="",
        metavar="PATH",
        help="write it to PATH (default ~/.ssh/condorsub.config) instead of printing it",
    )
    sc.add_argument(
        "--include", action="store_true", help="write it and add its Include line to ~/.ssh/config"
    )

    lb = sub.add_parser("lab", help="JupyterLab in a notebook job, on 127.0.0.1 here (no hub)")
    _resources(lb)
    lb.add_argument(
        "--dir",
        metavar="PATH",
        help="the work directory: into the job, and back on Ctrl-C (default: ./jupyter-lab)",
    )
    lb.add_argument("--open", action="store_true", help="open the URL in a browser too")
    lb.add_argument("--schedd", metavar="NAME", help="this schedd (default: the least loaded)")
    lb.add_argument(
        "--python",
        default=sys.executable,
        metavar="PATH",
        help="the job's Python, with condorspawner and jupyterlab (default: condorsub's)",
    )

    c = sub.add_parser("containers", help="the container OS choices of this site")
    c.add_argument(
        "--ep-config", action="store_true", help="the execute-point HTCondor configuration for them"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] in (["ssh-proxy"], ["ssh-bridge"]):  # what ssh runs, not for people
        return _hidden(words)
    args = parser().parse_args(argv)
    try:
        if args.command == "submit":
            from condorspawner.cli.submit import submit

            return submit(args)
        if args.command == "dag":
            from condorspawner.cli.dag import dag

            return dag(args)
        if args.command == "shell":
            from condorspawner.cli.interactive import shell

            return shell(args)
        if args.command == "tunnel":
            from condorspawner.cli.interactive import tunnel

            return tunnel(args)
        if args.command == "lab":
            from condorspawner.cli.lab import lab

            return lab(args)
        if args.command in ("ssh", "ssh-config"):
            from condorspawner.cli import remote

            return {"ssh": remote.ssh, "ssh-config": remote.ssh_config}[args.command](args)
        if args.command == "containers":
            from condorspawner.cli.jobs import containers

            return containers(args)
        from condorspawner.cli import jobs

        return {
            "q": jobs.queue,
            "hold": jobs.act,
            "release": jobs.act,
            "rm": jobs.act,
            "logs": jobs.logs,
        }[args.command](args)
    except CliError as err:
        print(f"condorsub: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130


def _hidden(words: list[str]) -> int:
    """``ssh-proxy`` (ssh's ProxyCommand) and ``ssh-bridge`` (condor_ssh_to_job's -ssh)."""
    from condorspawner.cli import remote

    try:
        if words[0] == "ssh-proxy":
            return remote.ssh_proxy(words[1:])
        return remote.ssh_bridge(words[1:])
    except CliError as err:
        print(f"condorsub: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
