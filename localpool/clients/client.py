"""The ``condor_*`` commands as thin clients of the pool process (standard library only).

A tool sends its argv, environment and umask, with its stdin, stdout,
stderr and current directory as file descriptors (SCM_RIGHTS), over the
pool's Unix socket and exits with the code the pool answers. The pool
process knows the caller from the socket (SO_PEERCRED), the way HTCondor's
FS authentication does, and runs the command as that user. Only
``condor_ssh_to_job`` (the session directory, keys and ``ssh`` run as the
calling user, as the real client does) and ``condor_chirp`` (spoken to the
job's starter) do more here (``localpool.clients.sshclient``,
``localpool.clients.chirpclient``); the wire is ``localpool.clients.wire``. These modules
import nothing outside the standard library: any account's
``/usr/bin/python3`` runs them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from localpool.clients.sshclient import interactive, ssh_to_job
from localpool.clients.wire import NoPool, Pool

DIR_ENV = "LOCALPOOL_DIR"
CONF_NAME = "localpool.conf"


def read_conf(path: Path) -> str | None:
    """``LOCALPOOL_DIR = /path`` from an installation's ``etc/localpool.conf``."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == DIR_ENV and value.strip():
            return value.strip()
    return None


def pool_dir(script: str, default: str | None = None) -> Path:
    """``$LOCALPOOL_DIR``, else ``../etc/localpool.conf`` beside the tool, else ``default``."""
    env = os.environ.get(DIR_ENV)
    if env:
        return Path(env)
    conf = Path(os.path.abspath(script)).parent.parent / "etc" / CONF_NAME
    found = read_conf(conf)
    if found:
        return Path(found)
    if default:
        return Path(default)
    import tempfile

    return Path(tempfile.gettempdir()) / f"localpool-{os.getuid()}"


def main(
    argv: list[str] | None = None, pool_dir_default: str | None = None, python: str | None = None
) -> int:
    """What every ``condor_*`` script runs."""
    argv = list(sys.argv if argv is None else argv)
    tool = os.path.basename(argv[0])
    pool = Pool(pool_dir(argv[0], pool_dir_default), python)
    try:
        if tool == "condor_chirp":
            from localpool.clients.chirpclient import main as chirp_main

            return chirp_main(argv[1:])
        if tool == "condor_dagman":  # the DAGMan job itself, run as its owner
            from localpool.dagman.runner import main as dagman_main

            return dagman_main(argv)
        if tool == "condor_ssh_to_job":
            return ssh_to_job(pool, argv)
        reply = pool.tool(argv)
        if reply.get("ssh"):  # condor_submit -interactive: the job runs, now the shell
            return interactive(pool, os.path.abspath(argv[0]), reply)
        return int(reply.get("rc", 1))
    except NoPool as err:
        sys.stderr.write(
            f"ERROR: no localpool answers in {err} (run 'localpool start', or set {DIR_ENV})\n"
        )
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
