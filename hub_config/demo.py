"""The one-machine demo: localpool plus JupyterHub with CondorSpawner on http://127.0.0.1:8000.

``scripts/demo`` runs this as root after installing what it needs, the way a
site runs the hub: localpool is started by root and its ``condor_*`` tools are
installed under ``<demo dir>/install``; JupyterHub runs as root and acts for
each user through ``sudo -n -u <account>`` (the site file's ``run_as``). Each
name that logs in (with the demo password) becomes the Unix account
``demo-<name>`` with a home in /home (``hub_config.demo_auth``), recorded in
``<demo dir>/accounts.txt``. Ctrl-C stops the hub and the pool and removes the
jobs, and keeps the accounts; ``scripts/demo --clean`` removes the accounts,
their homes and the demo directory (``.demo/`` of the checkout).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from hub_config.configure import REPO
from hub_config.demo_auth import account_exists, recorded_accounts, remove_account

PASSWORD = "condor-demo"  # noqa: S105 (the documented demo login)
SITE = """\
# The demo's site file (see hub_config/site.example.toml for every key).
{pool}
[limits.cpus]
default = 1
max = 4
[limits.memory]
default = "1GB"
max = "4GB"
[limits.runtime]
default = "2h"
max = "8h"

[[containers.os]]
name = "Rocky9"
label = "Rocky Linux 9"
description = "Enterprise Linux, like most clusters run: pick it for software built for them."
image = "/containers/rocky9.sif"
default = true

[[containers.os]]
name = "Debian12"
label = "Debian 12"
description = "Debian's stable release, with newer compilers and libraries."
image = "/containers/debian12.sif"

[notebook]
work_directory = "{work_directory}"
start_timeout = "{start_timeout}"
grace_period = "1m"
# an IDTOKEN for each notebook job: condorsub in its terminals submits as the user
submit_token = true
"""


def site_toml(work: Path | None, start_timeout: str = "2m", run_as_users: str | None = None) -> str:
    """The demo's site file (the tests use it too, with a shorter start timeout).

    ``work`` holds every user's work directory (tools run as the hub's account);
    with ``run_as_users`` (the directory of the condor_* tools) the hub acts as each
    user through sudo and work directories are in the users' homes.
    """
    if run_as_users:
        pool = f'[pool]\nrun_as = ["sudo", "-n", "-u", "{{user}}"]\nbin_dir = "{run_as_users}"\n'
        work_directory = "~/jupyter"
    else:
        pool, work_directory = "", f"{work}/{{username}}/jupyter"
    return SITE.format(pool=pool, work_directory=work_directory, start_timeout=start_timeout)


HUB_STOP_TIMEOUT = 60.0  # JupyterHub stops the servers (each job held, files back, removed)
# what the demo writes into its directory (--clean removes these, nothing else)
DEMO_FILES = (
    "install",
    "pool",
    "accounts.txt",
    "demo.pid",
    "site.toml",
    "jupyterhub_config.py",
    "jupyterhub.sqlite",
    "jupyterhub.log",
    "jupyterhub.pid",
    "jupyterhub-proxy.pid",
    "cookie_secret",
    "submit",  # earlier demos: job files and work directories in the demo directory
    "work",
)


class _Stop(Exception):
    """SIGTERM: stop as on Ctrl-C."""


def step(text: str) -> None:
    """One line saying what the demo does now."""
    print(f"demo: {text}", flush=True)


def _unreachable(path: Path) -> Path | None:
    """The first directory on the way to ``path`` other accounts cannot enter, if any."""
    for folder in [*reversed(path.parents), path]:
        if folder.exists() and not folder.stat().st_mode & 0o001:
            return folder
    return None


def _localpool(pool_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a localpool command as root (its output is kept for when it fails)."""
    return subprocess.run(
        [sys.executable, "-m", "localpool.cli", "--dir", str(pool_dir), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _realpool(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real HTCondor pool's command (``CONDORSPAWNER_HTCONDOR``): ``root/pool``,
    its tools in ``root/install/bin``, as localpool's are."""
    return subprocess.run(
        [sys.executable, "-m", "tests.realpool", *args, str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _stop_pool(root: Path) -> None:
    """The demo's pool stopped, its jobs removed: the real one if it ran, else localpool."""
    if (root / "pool" / "master.pid").exists():
        stopped = _realpool(root, "stop")
    else:
        stopped = _localpool(root / "pool", "stop", "--remove-jobs")
    if stopped.returncode != 0:
        sys.stderr.write(stopped.stdout + stopped.stderr)


def _checked(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"demo: {what} failed (exit code {result.returncode})")


def _write_config(root: Path, port: int, token: str | None, bin_dir: Path) -> Path:
    """The site file (tools as each user through sudo) and jupyterhub_config.py."""
    site = root / "site.toml"
    site.write_text(site_toml(None, start_timeout="2m", run_as_users=str(bin_dir)))
    site.chmod(0o644)
    services = ""
    if token:  # for automation (tests): an admin service with this API token
        services = textwrap.dedent(f"""\
            c.JupyterHub.services = [{{"name": "demo-admin", "api_token": {token!r}}}]
            c.JupyterHub.load_roles = [{{"name": "admin", "services": ["demo-admin"]}}]
            """)
    config = root / "jupyterhub_config.py"
    _write_private(
        config,
        textwrap.dedent(f"""\
        import hub_config

        c = get_config()  # noqa: F821
        hub_config.configure(c, {str(site)!r})
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {port}
        c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
        c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
        c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
        # each name becomes the Unix account demo-<name>, made at its first login
        c.JupyterHub.authenticator_class = "hub_config.demo_auth.DemoAuthenticator"
        c.DemoAuthenticator.password = {PASSWORD!r}
        c.DemoAuthenticator.accounts_file = "{root}/accounts.txt"
        c.Authenticator.allow_all = True
        # job files in {{home}}/.condorspawner (the default submit_root), written as the user
        c.CondorSpawner.job_python = {sys.executable!r}
        c.CondorSpawner.queue_poll_interval = 2.0
        c.CondorSpawner.queue_poll_interval_pending = 0.5
        """)
        + services,
    )
    return config


def _write_private(path: Path, text: str) -> None:
    """``text`` in a file only root reads (it may hold the admin API token), never more
    open than that, not even while it is written."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def start_jupyterhub(
    config: Path, cwd: Path, log: object, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """JupyterHub with ``config``, in a session of its own, its files private (umask 077):
    its database holds every session's state, the rendezvous secrets among it."""
    return subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        umask=0o077,
    )


def _wait_up(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: JupyterHub exited (code {process.returncode}); see the log")
        try:
            urllib.request.urlopen(f"{url}/hub/api", timeout=2)  # noqa: S310 (our own hub)
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"demo: JupyterHub did not answer at {url} within {timeout:g} s")


def _clean_command(root: Path) -> str:
    default = (REPO / ".demo").resolve()
    return "./scripts/demo --clean" + ("" if root == default else f" --dir {root}")


def run(root: Path, port: int) -> int:
    """Start the pool and the hub, wait for Ctrl-C (or SIGTERM), stop both; keep the accounts."""
    for path in (REPO, root.parent):
        blocked = _unreachable(path)
        if blocked is not None:
            raise SystemExit(
                f"demo: other accounts cannot enter {blocked} (mode "
                f"{blocked.stat().st_mode & 0o777:o}); the demo's accounts need to reach "
                f"{path}: put the checkout and the demo directory where every account can"
            )
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the accounts reach the pool's socket through it
    pool_dir, prefix = root / "pool", root / "install"
    real = os.environ.get("CONDORSPAWNER_HTCONDOR")  # a real HTCondor instead of localpool
    url = f"http://127.0.0.1:{port}"
    log_path = root / "jupyterhub.log"
    hub: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    (root / "demo.pid").write_text(f"{os.getpid()}\n")  # --clean stops a running demo first
    try:
        if real:
            step(
                f"starting a real HTCondor pool as root in {pool_dir} (HTCondor from {real}; "
                f"one execute point: 8 CPUs, 16GB, Rocky9 and Debian12), its condor_* tools "
                f"in {prefix / 'bin'}"
            )
            _checked(
                _realpool(root, "start", "--cpus", "8", "--memory", "16GB"),
                "starting the HTCondor pool",
            )
        else:
            step(
                f"starting localpool as root in {pool_dir} (one execute point: 8 CPUs, 16GB, "
                "Rocky9 and Debian12, a network namespace per job)"
            )
            _checked(
                _localpool(
                    pool_dir,
                    "start",
                    "--cpus",
                    "8",
                    "--memory",
                    "16GB",
                    "--container-os",
                    "Rocky9,Debian12",
                ),
                "starting localpool",
            )
            step(f"installing the pool's condor_* tools in {prefix / 'bin'}, as on an access point")
            _checked(
                _localpool(pool_dir, "install", "--prefix", str(prefix)), "installing localpool"
            )
        step(
            f"writing the site file (tools run as each user through sudo) and JupyterHub's "
            f"configuration in {root}"
        )
        config = _write_config(
            root, port, os.environ.get("CONDORSPAWNER_DEMO_TOKEN"), prefix / "bin"
        )
        step(f"starting JupyterHub as root on {url} (log: {log_path})")
        with open(log_path, "ab") as log:
            hub = start_jupyterhub(config, root, log)
        step("waiting for JupyterHub to answer")
        _wait_up(url, hub, timeout=90)
        print(
            f"\nJupyterHub with CondorSpawner on {'HTCondor' if real else 'localpool'}: {url}\n"
            f"  log in with a user name (lowercase letters and digits) and the password: "
            f"{PASSWORD}\n"
            "  each name becomes the Unix account demo-<name> (home in /home), and its\n"
            "  notebook runs as an HTCondor job of that account\n"
            f"  hub log: {log_path}\n"
            f"  the pool's commands: {prefix / 'bin'} (e.g. {prefix / 'bin'}/condor_q -allusers)\n"
            "  Ctrl-C stops the hub and the pool and removes the jobs; the accounts stay\n"
            f"  until {_clean_command(root)}\n",
            flush=True,
        )
        while hub.poll() is None:
            time.sleep(0.5)
        step(f"JupyterHub exited (code {hub.returncode}); see {log_path}")
    except (KeyboardInterrupt, _Stop):
        print(flush=True)
    finally:
        # every wait below is bounded; a second Ctrl-C must not leave the jobs behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if hub is not None and hub.poll() is None:
            step(
                f"stopping JupyterHub (it stops the notebook servers; up to {HUB_STOP_TIMEOUT:g} s)"
            )
            os.killpg(hub.pid, signal.SIGTERM)
            try:
                hub.wait(timeout=HUB_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
                hub.wait(timeout=10)
        step("stopping the pool and removing its jobs")
        _stop_pool(root)
        with contextlib.suppress(FileNotFoundError):
            (root / "demo.pid").unlink()
        accounts = [n for n in recorded_accounts(root / "accounts.txt") if account_exists(n)]
        kept = ", ".join(accounts) if accounts else "none so far"
        step(
            f"stopped. Kept: the accounts demo-* ({kept}) with their homes, and {root}; "
            f"{_clean_command(root)} removes them"
        )
    return 0


def _running(pid_file: Path, marker: bytes) -> int | None:
    """The pid in ``pid_file`` if that process runs and its command line holds ``marker``."""
    try:
        pid = int(pid_file.read_text().strip())
        return pid if marker in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except (OSError, ValueError):
        return None


def _terminate(pid: int, what: str, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    step(f"stopping {what} (pid {pid}; up to {timeout:g} s)")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def _stop_running_demo(root: Path) -> None:
    """A demo still running on this directory (it stops its hub and pool), or its hub alone."""
    pid = _running(root / "demo.pid", b"hub_config.demo")
    if pid is not None and pid != os.getpid():
        _terminate(pid, "the running demo", HUB_STOP_TIMEOUT + 30)
    pid = _running(root / "jupyterhub.pid", b"jupyterhub")
    if pid is not None:
        _terminate(pid, "the demo's JupyterHub", HUB_STOP_TIMEOUT)


def clean(root: Path) -> int:
    """Stop the hub and the pool (removing its jobs), remove the accounts and the demo dir."""
    if not root.is_dir():
        step(f"nothing to clean: there is no {root}")
        return 0
    _stop_running_demo(root)
    if (root / "pool").is_dir():
        step("stopping the pool and removing its jobs")
        _stop_pool(root)
    record = root / "accounts.txt"
    names = recorded_accounts(record)
    kept = []
    for name in names:
        if not remove_account(name, step):
            kept.append(name)
    if kept:
        record.write_text("".join(f"{name}\n" for name in kept))
        step(f"kept {root} and in {record.name}: {', '.join(kept)}; see the messages above")
        return 1
    step(f"removing the demo directory {root}")
    for name in DEMO_FILES:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    try:
        root.rmdir()
    except OSError:
        step(f"kept {root}: it holds files the demo did not write: {sorted(os.listdir(root))}")
    step("clean: no demo accounts, jobs or demo directory left")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dir", type=Path, default=REPO / ".demo", help="the demo directory")
    parser.add_argument(
        "--clean",
        action="store_true",
        help="stop the pool (removing its jobs), remove the accounts demo-* the demo made "
        "(listed in DIR/accounts.txt) with their homes, and the demo directory",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit(
            "demo: run it as root: it creates a Unix account for each user, runs the pool "
            "as root and acts for each user through sudo, as a site does"
        )
    root = args.dir.resolve()
    return clean(root) if args.clean else run(root, args.port)


if __name__ == "__main__":
    sys.exit(main())
