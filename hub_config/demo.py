"""The one-machine demo: localpool plus JupyterHub with CondorSpawner on http://127.0.0.1:8000.

``scripts/demo`` runs this after installing what it needs. Log in with any user
name and the password printed at start; Ctrl-C stops the hub and the pool and
removes the demo's jobs. Everything lives in ``.demo/`` of the checkout.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from hub_config.configure import REPO

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
image = "/containers/rocky9.sif"
default = true

[[containers.os]]
name = "Debian12"
label = "Debian 12"
image = "/containers/debian12.sif"

[notebook]
work_directory = "{work_directory}"
start_timeout = "{start_timeout}"
grace_period = "1m"
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


def _write_config(root: Path, port: int, token: str | None) -> Path:
    (root / "site.toml").write_text(site_toml(root / "work"))
    services = ""
    if token:  # for automation (tests): an admin service with this API token
        services = textwrap.dedent(f"""\
            c.JupyterHub.services = [{{"name": "demo-admin", "api_token": {token!r}}}]
            c.JupyterHub.load_roles = [{{"name": "admin", "services": ["demo-admin"]}}]
            """)
    config = root / "jupyterhub_config.py"
    config.write_text(
        textwrap.dedent(f"""\
        import hub_config

        c = get_config()  # noqa: F821
        hub_config.configure(c, {str(root / "site.toml")!r})
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {port}
        c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
        c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
        c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = {PASSWORD!r}
        c.Authenticator.allow_all = True
        c.CondorSpawner.submit_root = "{root}/submit/{{username}}"
        c.CondorSpawner.job_python = {sys.executable!r}
        c.CondorSpawner.queue_poll_interval = 2.0
        c.CondorSpawner.queue_poll_interval_pending = 0.5
        """)
        + services
    )
    return config


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dir", type=Path, default=REPO / ".demo")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    pool_dir = root / "pool"
    env = {
        **os.environ,
        "LOCALPOOL_DIR": str(pool_dir),
        "PATH": f"{pool_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    pool = [sys.executable, "-m", "localpool.cli", "--dir", str(pool_dir)]
    subprocess.run(
        [*pool, "start", "--cpus", "8", "--memory", "16GB", "--container-os", "Rocky9,Debian12"],
        env=env,
        check=True,
    )
    config = _write_config(root, args.port, os.environ.get("CONDORSPAWNER_DEMO_TOKEN"))
    log = open(root / "jupyterhub.log", "ab")  # noqa: SIM115 (handed to the child)
    hub = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{args.port}"
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        _wait_up(url, hub, timeout=90)
        print(
            f"\nJupyterHub with CondorSpawner on localpool: {url}\n"
            f"  log in with any user name and the password: {PASSWORD}\n"
            f"  hub log: {root / 'jupyterhub.log'}; the pool's commands: "
            f'eval "$({sys.executable} -m localpool.cli --dir {pool_dir} env)"\n'
            "  Ctrl-C stops everything and removes the demo's jobs.\n",
            flush=True,
        )
        while not stopping and hub.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("demo: stopping JupyterHub and the pool...", flush=True)
        if hub.poll() is None:
            os.killpg(hub.pid, signal.SIGTERM)
            try:
                hub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
        subprocess.run([*pool, "stop", "--remove-jobs"], env=env, check=False)
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
