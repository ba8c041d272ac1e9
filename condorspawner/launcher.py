"""condorspawner-singleuser: starts the notebook server inside the HTCondor job.

Runs under ``wrapper.sh`` in the job, as the job's owner. It reads the
private file the hub sent (the server's environment with the API token, the
site settings condorsub needs, the spawn's rendezvous; see
:mod:`condorspawner.protocol`) and removes it, makes the rendezvous directory
(0700), and starts ``jupyterhub-singleuser`` on the Unix socket ``nb.sock``
there: no port on the execute point's shared loopback, nothing another user's
job could squat or answer for.

The server reaches the hub API through a port this launcher binds before the
server starts and keeps for the job's life; each connection goes on to the
newest ``hub-*.sock`` in the directory, which the hub's current tunnel
forwards back to the hub (``ssh -R``), and waits for one while there is none;
if no tunnel comes in time, the server is ended. (With ``hub_api = "direct"``
the server talks to the hub itself.)
The server is stopped a grace period before the job's runtime limit, so
HTCondor transfers the work directory back before it would hold the job.

Without a hub (``condorsub lab``: ``hub_api = "none"`` in the private file)
it runs ``jupyter-lab`` on the same socket instead, its token from the
private file, with no relay and no wait for a hub; limit and grace alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import sys
from pathlib import Path

from condorspawner.protocol import (
    HUB_SOCKET_RE,
    SECRET_FILE,
    TOKEN_DIR_ENV,
    JobSecret,
    ProtocolError,
)
from proxy_tunnel.procs import die_with_parent, peer_uid
from proxy_tunnel.relay import SocketRelay

# jupyter_server refuses --sock with any port but its default (8888)
SOCKET_SERVICE_PORT = 8888


def read_secret(path: Path) -> JobSecret:
    """What the hub sent; the file is removed once read."""
    try:
        secret = JobSecret.loads(path.read_text())
    except (OSError, ProtocolError) as err:
        raise SystemExit(f"condorspawner-singleuser: cannot read {path}: {err}") from None
    path.unlink(missing_ok=True)
    return secret


def private_directory(path: Path) -> Path:
    """The rendezvous directory, ours alone (0700); a previous run's leftovers cleared.

    Its name is secret, so it exists already only if this user's earlier run of
    the same job left it here: then it must be our own real directory.
    """
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        info = path.lstat()
        ours = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
        if not ours or info.st_mode & 0o077:
            raise SystemExit(
                f"condorspawner-singleuser: {path} exists and is not this user's private directory"
            ) from None
        for leftover in path.iterdir():
            leftover.unlink(missing_ok=True)
    path.chmod(0o700)
    return path


def batch_environment(site_text: str | None) -> dict[str, str]:
    """What condorsub needs in the notebook's terminals: itself on PATH, the site file."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if site_text:
        folder = Path(".condorspawner").resolve()
        folder.mkdir(exist_ok=True)
        (folder / "site.toml").write_text(site_text)
        env["CONDORSPAWNER_SITE"] = str(folder / "site.toml")
    return env


def token_directory(directory: Path, token: str | None) -> dict[str, str]:
    """The IDTOKEN the hub fetched, in a 0700 directory of the job's private one, and the
    variable that makes the HTCondor tools of the server and its terminals use it."""
    if not token:
        return {}
    folder = directory / "tokens.d"
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    fd = os.open(folder / "notebook", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with open(fd, "w") as f:
        f.write(token + "\n")
    return {TOKEN_DIR_ENV: str(folder)}


def login_shell() -> str:
    """The user's login shell from the passwd entry the job runs with, else bash."""
    with contextlib.suppress(KeyError):
        shell = pwd.getpwuid(os.getuid()).pw_shell
        if shell and Path(shell).name not in ("nologin", "false") and os.access(shell, os.X_OK):
            return shell
    return shutil.which("bash") or "/bin/sh"


def terminal_settings(root_dir: Path, env: dict[str, str]) -> list[str]:
    """Make a terminal the batch environment: SHELL and ``CONDORSUB_JOBS`` (unless the
    site's environment names it) set in ``env``; returns the server's arguments for it.

    wrapper.sh ran the login profiles once, as a desktop session does; terminals
    are interactive shells in that environment, as a desktop's terminal windows
    are. Left alone, the server would start ``sh -l`` (SHELL is unset in a job),
    whose /etc/profile resets PATH and loses condorsub. condorsub's job
    directories go in the work directory, so batch output comes home with it.
    """
    shell = login_shell()
    env["SHELL"] = shell
    env.setdefault("CONDORSUB_JOBS", str(root_dir / "condorsub-jobs"))
    return [f"--ServerApp.terminado_settings={json.dumps({'shell_command': [shell]})}"]


def job_ad_number(*attrs: str) -> int | None:
    """The first of these integer attributes in the job's own ad (``$_CONDOR_JOB_AD``)."""
    path = os.environ.get("_CONDOR_JOB_AD")
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for attr in attrs:
        match = re.search(rf"^{attr} = (\d+)$", text, re.MULTILINE)
        if match:
            return int(match.group(1))
    return None


def job_owner() -> str | None:
    """The job's ``Owner`` from its own ad (None outside HTCondor)."""
    path = os.environ.get("_CONDOR_JOB_AD")
    if not path:
        return None
    with contextlib.suppress(OSError):
        match = re.search(r'^Owner = "([^"\\]*)"$', Path(path).read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return None


def check_own_account(shared_ok: bool) -> None:
    """The server's isolation (its 0700 directory, ``nb.sock``, the relay's peer check,
    its ``/proc`` entries) is by uid: a job that does not run as its Owner's account
    (nobody, slot users, a pilot) may share its uid with other users' jobs, which could
    then read the API token and reach the server. Refused unless the site accepts it."""
    owner = job_owner()
    if owner is None:
        return
    try:
        expected: int | None = pwd.getpwnam(owner).pw_uid
    except KeyError:
        expected = None
    if expected == os.getuid():
        return
    account = f"uid {os.getuid()}"
    with contextlib.suppress(KeyError):
        account += f" ({pwd.getpwuid(os.getuid()).pw_name})"
    message = (
        f"this job runs as {account}, not as its owner {owner}: other users' jobs on this "
        "execute point may run as the same account and could read the server's token"
    )
    if not shared_ok:
        raise SystemExit(
            f"condorspawner-singleuser: {message}. The server was not started; a site "
            "that accepts this sets notebook.shared_job_accounts = true (docs/admin.md)."
        )
    print(
        f"condorspawner-singleuser: {message} (accepted: notebook.shared_job_accounts)",
        file=sys.stderr,
    )


def runtime_limit() -> int | None:
    """Seconds the job may execute (MaxRuntime, else AllowedExecuteDuration)."""
    return job_ad_number("MaxRuntime", "AllowedExecuteDuration")


def server_command(
    sock: str, extra: list[str], server: str | None = None, *, hub: bool = True
) -> list[str]:
    """The server's command line: ``server`` if given, else the one beside this Python:
    jupyterhub-singleuser, or without a hub (``condorsub lab``) jupyter-lab, which reads
    its token from ``JUPYTER_TOKEN`` (the private file's env)."""
    if server:
        return [*shlex.split(server), f"--sock={sock}", *extra]
    name = "jupyterhub-singleuser" if hub else "jupyter-lab"
    beside = Path(sys.executable).parent / name
    program = str(beside) if beside.exists() else name
    command = [program, f"--sock={sock}", "--sock-mode=0600", *extra]
    if os.geteuid() == 0:  # only ever in test pools: real jobs do not run as root
        command.append("--ServerApp.allow_root=True")
    return command


def hub_sockets(directory: Path) -> list[Path]:
    """The tunnels' hub-API sockets, newest first."""
    found = []
    for entry in directory.iterdir():
        if HUB_SOCKET_RE.match(entry.name):
            with contextlib.suppress(OSError):
                found.append((entry.lstat().st_mtime, entry))
    return [path for _, path in sorted(found, reverse=True)]


def hub_relay(directory: Path, patience: float = 0) -> SocketRelay:
    """The server's hub-API port: each connection from this user's own processes (the
    execute point's loopback may be shared with other users' jobs) to the newest live
    tunnel socket in ``directory``, waiting up to ``patience`` while there is none."""

    def own_process(writer: asyncio.StreamWriter) -> bool:
        peer, me = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
        return peer_uid(peer[:2], me[:2]) == os.getuid()

    return SocketRelay(
        lambda: [str(path) for path in hub_sockets(directory)],
        patience=patience,
        admit=own_process,
        forget_refused=True,
        owner=os.getuid(),
    )


async def run(args: argparse.Namespace, secret: JobSecret) -> int:
    meeting = secret.rendezvous.for_run(job_ad_number("JobCurrentStartDate"))
    directory = private_directory(Path(meeting.directory))
    env = {**os.environ, **secret.env, **batch_environment(secret.site)}
    env.update(token_directory(directory, secret.token))
    if secret.hub_api != "none":
        prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{SOCKET_SERVICE_PORT}{prefix}"
    relay = None
    if secret.hub_api == "tunnel":
        relay = hub_relay(directory, patience=args.wait_for_hub)
        port = await relay.listen()
        hub_api = env.get("JUPYTERHUB_API_URL", "")
        local_api = f"http://127.0.0.1:{port}/hub/api"
        for key in ("JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL"):
            if hub_api and env.get(key, "").startswith(hub_api):
                env[key] = local_api + env[key][len(hub_api) :]
        env["JUPYTERHUB_API_URL"] = local_api
    extra = list(args.extra)
    cwd = None
    if args.root_dir and not args.server:
        root = Path(args.root_dir)
        root.mkdir(parents=True, exist_ok=True)
        cwd = root.resolve()  # new terminals open here
        extra.append(f"--ServerApp.root_dir={cwd}")
        extra += terminal_settings(cwd, env)
    # The server starts at once: its start-up overlaps the hub opening the tunnel
    # (the relay holds its first hub API call until the tunnel is there).
    server = await asyncio.create_subprocess_exec(
        *server_command(meeting.notebook_socket, extra, args.server, hub=secret.hub_api != "none"),
        env=env,
        cwd=cwd,
        preexec_fn=die_with_parent,  # never a server without its relay
    )
    stopping: list[str] = []

    def stop(why: str) -> None:
        stopping.append(why)
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop, "signal")
    loop.add_signal_handler(signal.SIGINT, stop, "signal")
    limit = runtime_limit()
    if limit is not None:
        loop.call_later(max(1, limit - args.grace), stop, "runtime limit")
    if relay is not None:
        deadline = loop.time() + args.wait_for_hub
        while server.returncode is None and not hub_sockets(directory):
            if loop.time() > deadline:
                print(
                    f"condorspawner-singleuser: the hub's tunnel did not arrive within "
                    f"{args.wait_for_hub:g} s",
                    file=sys.stderr,
                )
                stop("no tunnel")
                break
            await asyncio.sleep(0.1)
    code = await server.wait()
    shutil.rmtree(directory, ignore_errors=True)
    if stopping:
        return 1 if stopping == ["no tunnel"] else 0
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="condorspawner-singleuser", description=__doc__)
    parser.add_argument("--secret", default=SECRET_FILE, type=Path)
    parser.add_argument(
        "--grace", type=int, default=300, help="stop this many seconds before the runtime limit"
    )
    parser.add_argument(
        "--wait-for-hub",
        type=float,
        default=600,
        help="seconds to wait for the hub's tunnel",
    )
    parser.add_argument("--root-dir", help="the directory the notebook shows (the work directory)")
    parser.add_argument("--server", help="another server command line (gets --sock=PATH)")
    parser.add_argument("extra", nargs="*", help="more jupyterhub-singleuser arguments")
    args = parser.parse_args(argv)
    secret = read_secret(args.secret)
    check_own_account(secret.shared_account)
    return asyncio.run(run(args, secret))


if __name__ == "__main__":
    sys.exit(main())
