"""The ``condor_*`` commands as files: in the pool directory, or installed as on an access point.

Each command is a tiny script run by an interpreter every account may
execute (``/usr/bin/python3``) that calls the standard-library client
(``localpool.clients.client``) from this project's directory, which is world-readable.
``localpool install --prefix DIR`` writes ``DIR/bin/condor_*`` and
``DIR/etc/localpool.conf`` (naming the pool directory, the role
``CONDOR_CONFIG`` plays); an installed tool finds that file relative to its
own location, and ``$LOCALPOOL_DIR`` still overrides it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from localpool.clients.client import CONF_NAME, DIR_ENV

TOOLS = (
    "condor_submit",
    "condor_submit_dag",
    "condor_dagman",
    "condor_q",
    "condor_history",
    "condor_rm",
    "condor_hold",
    "condor_release",
    "condor_vacate_job",
    "condor_qedit",
    "condor_ssh_to_job",
    "condor_status",
    "condor_chirp",
    "condor_token_fetch",
    "condor_token_list",
)
PROJECT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"


def interpreter() -> str:
    """``/usr/bin/python3`` (any account runs it), else this Python."""
    return SYSTEM_PYTHON if os.access(SYSTEM_PYTHON, os.X_OK) else sys.executable


def script(tool: str, pool_dir: Path | None) -> str:
    """One command's text; ``pool_dir`` None: found from ``../etc/localpool.conf``."""
    return (
        f"#!{interpreter()} -I\n"
        f"# localpool's {tool}: a client of the pool process (localpool.clients.client)\n"
        "import sys\n"
        f"sys.path.insert(0, {str(PROJECT)!r})\n"
        "from localpool.clients.client import main\n"
        f"sys.exit(main(sys.argv, {str(pool_dir) if pool_dir else None!r}, {sys.executable!r}))\n"
    )


def write_tools(bin_dir: Path, pool_dir: Path | None) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    bin_dir.chmod(0o755)
    for tool in TOOLS:
        path = bin_dir / tool
        tmp = path.with_name(f".{tool}.tmp")
        tmp.write_text(script(tool, pool_dir))
        tmp.chmod(0o755)
        tmp.replace(path)


def install(prefix: Path, pool_dir: Path) -> None:
    """``PREFIX/bin/condor_*`` and ``PREFIX/etc/localpool.conf`` for the pool in ``pool_dir``."""
    prefix = prefix.absolute()
    write_tools(prefix / "bin", None)
    etc = prefix / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    etc.chmod(0o755)
    conf = etc / CONF_NAME
    conf.write_text(
        "# localpool: which pool this installation's condor_* commands talk to\n"
        f"{DIR_ENV} = {pool_dir.absolute()}\n"
    )
    conf.chmod(0o644)
