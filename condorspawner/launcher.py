"""condorspawner-singleuser: starts the notebook server inside the HTCondor job.

Runs under ``wrapper.sh`` in the job. It binds the notebook to 127.0.0.1 on
port P as the hub chose it (another if P is taken) and uses port Q, where the
hub's tunnel forwards to the hub API, publishes both into the job ad with chirp
(``NotebookPort``, ``HubApiPort``) and starts
``jupyterhub-singleuser`` with the hub's environment, which arrived as a
private file (never in the job ad). The server's start-up overlaps the hub
opening its tunnel; if the reverse forward on Q never comes, the server is
ended. It stops the server a grace period before the job's runtime limit, so
HTCondor transfers the work directory back before it would hold the job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SECRET_FILE = "condorspawner.secret"  # noqa: S105 (a file name)
PORT_ATTR, HUB_PORT_ATTR = "NotebookPort", "HubApiPort"


def free_port(wanted: int | None = None) -> int:
    """``wanted`` if nothing listens there, else a port the kernel picks."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted or 0))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def choose_ports(planned: dict[str, int], tunnel: bool) -> tuple[int, int | None]:
    """(notebook port, hub API port) as the hub planned them, its tunnel already on its way.

    The notebook port is ours to bind: another if it is taken. The hub API port
    is where the hub's tunnel listens (``ssh -R``), maybe already: used as planned.
    """
    notebook = free_port(planned.get("notebook"))
    if not tunnel:
        return notebook, None
    return notebook, planned.get("hub_api") or free_port()


def read_secret(path: Path) -> dict[str, Any]:
    """What the hub sent (the server's environment, API token included; the site file's
    text); the file is removed once read."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"condorspawner-singleuser: cannot read {path}: {err}") from None
    path.unlink(missing_ok=True)
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise SystemExit(f"condorspawner-singleuser: {path} holds no environment")
    return data


def batch_environment(site_text: str | None) -> dict[str, str]:
    """What condorsub needs in the notebook's terminals: itself on PATH, the site file."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if site_text:
        folder = Path(".condorspawner").resolve()
        folder.mkdir(exist_ok=True)
        (folder / "site.toml").write_text(site_text)
        env["CONDORSPAWNER_SITE"] = str(folder / "site.toml")
    return env


def publish(attributes: dict[str, int], attempts: int = 20) -> None:
    """Set job attributes through chirp (retrying while the starter's chirp server starts)."""
    import htchirp

    for attempt in range(attempts):
        try:
            with htchirp.HTChirp() as chirp:
                for name, value in attributes.items():
                    chirp.set_job_attr(name, str(value))
            return
        except (OSError, RuntimeError) as err:
            if attempt == attempts - 1:
                raise SystemExit(f"condorspawner-singleuser: chirp failed: {err}") from None
            time.sleep(0.25)


def wait_for_port(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Wait until something accepts connections on 127.0.0.1:port (the reverse forward)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def runtime_limit() -> int | None:
    """Seconds the job may execute (AllowedExecuteDuration, else MaxRuntime) from its ad."""
    path = os.environ.get("_CONDOR_JOB_AD")
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for attr in ("AllowedExecuteDuration", "MaxRuntime"):
        match = re.search(rf"^{attr} = (\d+)$", text, re.MULTILINE)
        if match:
            return int(match.group(1))
    return None


def singleuser_command(port: int, extra: list[str], server: str | None = None) -> list[str]:
    """The server's command line: jupyterhub-singleuser beside this Python, or ``server``."""
    if server:
        return [*shlex.split(server), "--ip=127.0.0.1", f"--port={port}", *extra]
    beside = Path(sys.executable).parent / "jupyterhub-singleuser"
    program = str(beside) if beside.exists() else "jupyterhub-singleuser"
    command = [program, "--ip=127.0.0.1", f"--port={port}", *extra]
    if os.geteuid() == 0:  # only ever in test pools: real jobs do not run as root
        command.append("--ServerApp.allow_root=True")
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="condorspawner-singleuser", description=__doc__)
    parser.add_argument("--secret", default=SECRET_FILE, type=Path)
    parser.add_argument("--hub-api", choices=("tunnel", "direct"), default="tunnel")
    parser.add_argument(
        "--grace", type=int, default=300, help="stop this many seconds before the runtime limit"
    )
    parser.add_argument(
        "--wait-for-hub",
        type=float,
        default=600,
        help="seconds to wait for the hub's reverse forward",
    )
    parser.add_argument("--root-dir", help="the directory the notebook shows (the work directory)")
    parser.add_argument("--server", help="another server command line (gets --ip and --port)")
    parser.add_argument("extra", nargs="*", help="more jupyterhub-singleuser arguments")
    args = parser.parse_args(argv)

    sent = read_secret(args.secret)
    env = {**os.environ, **sent["env"], **batch_environment(sent.get("site"))}
    port, hub_port = choose_ports(sent.get("ports", {}), tunnel=args.hub_api == "tunnel")
    published = {PORT_ATTR: port}
    if hub_port is not None:
        published[HUB_PORT_ATTR] = hub_port
        tunnel_api = f"http://127.0.0.1:{hub_port}/hub/api"
        hub_api = env.get("JUPYTERHUB_API_URL", "")
        for key in ("JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL"):
            if hub_api and env.get(key, "").startswith(hub_api):
                env[key] = tunnel_api + env[key][len(hub_api) :]
        env["JUPYTERHUB_API_URL"] = tunnel_api
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{port}{prefix}"
    publish(published)
    extra = list(args.extra)
    if args.root_dir and not args.server:
        Path(args.root_dir).mkdir(parents=True, exist_ok=True)
        extra.append(f"--ServerApp.root_dir={Path(args.root_dir).resolve()}")
    # Start the server at once: its own start-up overlaps the hub opening the tunnel
    # (jupyterhub-singleuser retries its first hub API call while that happens).
    server = subprocess.Popen(singleuser_command(port, extra, args.server), env=env)
    stopping = []

    def stop(*_: object) -> None:
        stopping.append(True)
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    limit = runtime_limit()
    if limit is not None:
        signal.signal(signal.SIGALRM, stop)
        signal.alarm(max(1, limit - args.grace))
    if args.hub_api == "tunnel" and not wait_for_port(
        published[HUB_PORT_ATTR], args.wait_for_hub, alive=lambda: server.poll() is None
    ):
        if server.poll() is None:
            print(
                f"condorspawner-singleuser: the hub's tunnel did not arrive within "
                f"{args.wait_for_hub:g} s",
                file=sys.stderr,
            )
            server.terminate()
        code = server.wait()
        return 0 if stopping else code or 1
    code = server.wait()
    return 0 if stopping or code == 0 else code


if __name__ == "__main__":
    sys.exit(main())
