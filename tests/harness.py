"""Drivers for the real components the tests and benchmarks run: localpool and JupyterHub.

Used by tests/conftest.py (fixtures) and benchmarks/ alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import textwrap
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.waiting import wait_until

REFERENCE = Path(__file__).resolve().parent / "data" / "htcondor"
CONDORSUB = str(Path(sys.executable).parent / "condorsub")  # this venv's condorsub


def case(name: str) -> dict[str, str | int]:
    """One recorded command: cmd, stdout, stderr, rc."""
    folder = REFERENCE / "cases" / name
    return {
        "cmd": (folder / "cmd").read_text().strip(),
        "stdout": (folder / "stdout").read_text(),
        "stderr": (folder / "stderr").read_text(),
        "rc": int((folder / "rc").read_text().strip()),
    }


class QueueLooks:
    """``ad`` and ``wait_for`` over a pool's ``run`` (its condor_q and condor_history)."""

    def run(self, *args: str, **options):  # pragma: no cover (each pool has its own)
        raise NotImplementedError

    def ad(self, job_id: str, **options) -> dict | None:
        """The job's ad from the queue, else from the history, else None."""
        for tool in ("condor_q", "condor_history"):
            result = self.run(tool, "-json", job_id, **options)
            assert result.returncode == 0, result.stderr
            if result.stdout.strip():
                return json.loads(result.stdout)[0]
        return None

    def ssh_to_job(self, *args: str, timeout: float = 30.0, **options):
        """``condor_ssh_to_job ARGS`` once the schedd lets it in: as a user does, it asks
        again while the answer is "retry" (the job's starter has not reported in)."""

        def let_in():
            result = self.run("condor_ssh_to_job", *args, **options)
            retry = result.returncode != 0 and "-auto-retry" in result.stderr
            return None if retry else result

        return wait_until(let_in, timeout, f"condor_ssh_to_job {' '.join(args)} is let in")

    def wait_for(self, job_id: str, predicate, timeout: float = 30.0) -> dict:
        """The job's ad once ``predicate(ad)`` holds (bounded in time)."""
        last: list[dict | None] = [None]

        def reached() -> dict | None:
            last[0] = self.ad(job_id)
            return last[0] if last[0] is not None and predicate(last[0]) else None

        return wait_until(
            reached, timeout, lambda: f"job {job_id} reaches the state; last ad: {last[0]}", 0.1
        )


class Pool(QueueLooks):
    """A running localpool and a submit directory, with helpers to drive it."""

    backend = "localpool"

    def __init__(self, root: Path, submit_dir: Path) -> None:
        self.root = root
        self.submit_dir = submit_dir
        self.scratch = submit_dir.parent  # the test's own files (site file, work directories)
        self.bin = root / "bin"
        self.env = {
            **os.environ,
            "LOCALPOOL_DIR": str(root),
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
        }

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60, cwd: Path | None = None
    ):
        """Run a command (a condor_* tool of this pool) in the submit directory."""
        import subprocess

        return subprocess.run(
            list(args),
            cwd=cwd or self.submit_dir,
            env=self.env,
            text=True,
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def command(self, *argv: str) -> list[str]:
        """How to start ``argv`` as this pool's user (with ``env``): as it is."""
        return list(argv)

    def localpool(self, *args: str):
        return self.run(sys.executable, "-m", "localpool.cli", "--dir", str(self.root), *args)

    def restart(self, *options: str) -> None:
        """Stop the pool (its jobs too) and start it again with more options (``--schedds 2``)."""
        self.localpool("stop", "--remove-jobs")
        started = self.localpool("start", *options)
        assert started.returncode == 0, started.stdout + started.stderr

    def submit(self, text: str, name: str = "job.sub", *extra: str) -> str:
        """Submit a description; returns the first job id."""
        (self.submit_dir / name).write_text(textwrap.dedent(text))
        result = self.run("condor_submit", "-terse", *extra, name)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()[0]


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from the host")

    def log_message(self, *args):
        pass


REPO = Path(__file__).resolve().parents[1]
HUB_TOKEN = "condorspawner-test-service-token-0123456789"


def site_for_tests(work_root: Path) -> str:
    """The demo's site file, with a start timeout short enough for tests (10 s)."""
    from hub_config.demo import site_toml

    return site_toml(work_root, start_timeout="10s")


def drive_terminal(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    command: bytes,
    until: bytes,
    timeout: float = 40,
) -> str:
    """Run an interactive job's shell in a pseudo-terminal; once its prompt shows and the
    output goes quiet, type ``command``; return everything seen up to ``until``."""
    from tests.pseudo_terminal import PseudoTerminal

    with PseudoTerminal(argv, env=env, cwd=cwd) as terminal:
        # (condor_submit -interactive says "Waiting for job to start..." only when it waits)
        terminal.read_until(lambda _: terminal.at_prompt(), timeout, "the job's shell prompt")
        terminal.type(command)
        terminal.read_until(lambda seen: until in seen, timeout, f"{until!r}")
        terminal.exit_code()
        return terminal.text()


def _untimed(line: str) -> str:
    return re.sub(r"[\d-]* ?\d\d:\d\d:\d\d[.,]\d+", "", line)


class Hub:
    """A real JupyterHub (with configurable-http-proxy) using CondorSpawner on a localpool."""

    def flag(self, kind: str, tool: str, value: str = "") -> Path:
        """Make ``tool`` fail (kind "fail"), answer late (kind "slow": its answer lost for
        ``value`` seconds after it has done its work) or start late (kind "late": it begins once the
        flag is gone or ``value`` whole seconds have passed, as a slowed sshd in the job or a
        slow CCB makes a tunnel)."""
        path = self.root / f"{kind}-{tool}"
        path.write_text(value)
        path.chmod(0o644)
        return path

    def count_calls(self, tools: tuple[str, ...] = ("condor_q", "condor_history")) -> dict:
        """Calls of each of ``tools`` the hub made so far."""
        try:
            lines = self.calls.read_text().split()
        except FileNotFoundError:
            lines = []
        return {tool: lines.count(tool) for tool in tools}

    def __init__(self, root: Path, pool: Pool, extra_config: str = "", site: str | None = None):
        """``site``: the site file's text (default: the demo's, tools as the hub's account)."""
        self.root = root
        self.pool = pool
        self.killed: list[int] = []  # process groups of JupyterHubs killed by kill()
        root.mkdir(parents=True, exist_ok=True)
        self.work_root = root / "work"
        from proxy_tunnel import free_ports

        self.port, self.hub_port, self.proxy_api_port = free_ports(3)
        (root / "site.toml").write_text(site or site_for_tests(self.work_root))
        # every tool through a shim that counts its calls (benchmarks), fails while a file
        # fail-TOOL exists (tests of "unknown" states) and, while slow-TOOL holds a number of
        # seconds, answers only that long after it has done its work (a lost answer), and
        # while late-TOOL holds one, begins only when that time is up or the file is gone
        self.fail_flag = root / "fail-condor_q"
        self.calls = root / "condor-calls.log"
        shim = root / "shim"
        shim.mkdir(exist_ok=True)
        self.calls.touch(mode=0o666)
        self.calls.chmod(0o666)
        for tool in sorted(os.listdir(pool.bin)):
            real = pool.bin / tool
            (shim / tool).write_text(
                "#!/bin/sh\n"
                f"echo {tool} >> {self.calls}\n"
                f"if [ -e {root}/fail-{tool} ]; then\n"
                "  echo '-- Failed to fetch ads from: <127.0.0.1:9618> : test' >&2\n"
                "  exit 1\nfi\n"
                f"if [ -e {root}/slow-{tool} ]; then\n"
                f'  {real} "$@"; rc=$?; sleep "$(cat {root}/slow-{tool})"; exit $rc\nfi\n'
                f"if [ -e {root}/late-{tool} ]; then\n"
                f'  n="$(cat {root}/late-{tool})"\n'
                f'  while [ -e {root}/late-{tool} ] && [ "$n" -gt 0 ]; do\n'
                "    sleep 1; n=$((n - 1))\n  done\nfi\n"
                f'exec {real} "$@"\n'
            )
            (shim / tool).chmod(0o755)
        self.shim = shim
        base = getattr(pool, "env", None) or {**os.environ}
        self.env = {**base, "PATH": f"{shim}{os.pathsep}{base['PATH']}"}
        chp = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
        (root / "jupyterhub_config.py").write_text(
            textwrap.dedent(f"""\
            c = get_config()  # noqa
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.command = [{str(chp)!r}]
            c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
            c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
            c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
            c.JupyterHub.cleanup_servers = False
            c.JupyterHub.authenticator_class = "dummy"
            c.DummyAuthenticator.password = "test-password"
            c.Authenticator.allow_all = True
            c.JupyterHub.services = [{{"name": "tester", "api_token": {HUB_TOKEN!r}}}]
            c.JupyterHub.load_roles = [{{"name": "admin", "services": ["tester"]}}]
            c.JupyterHub.spawner_class = "condor"
            c.CondorSpawner.site_file = "{root}/site.toml"
            c.CondorSpawner.submit_root = "{root}/submit/{{username}}"
            c.CondorSpawner.hub_id = "test-hub-{root.name}"
            c.CondorSpawner.job_python = {sys.executable!r}
            c.CondorSpawner.queue_poll_interval = 1.0
            c.CondorSpawner.queue_poll_interval_pending = 0.25
            c.CondorSpawner.http_timeout = 60
            c.Spawner.poll_interval = 2
            c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
            """)
            + textwrap.dedent(extra_config)
        )
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        import urllib.request

        from hub_config.demo import start_jupyterhub

        with open(self.root / "jupyterhub.log", "ab") as log:
            self.process = start_jupyterhub(
                self.root / "jupyterhub_config.py", self.root, log, self.env
            )

        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"jupyterhub exited: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/hub/api", timeout=2)
            except OSError:
                return False
            return True

        wait_until(answers, timeout, lambda: f"jupyterhub answers: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL JupyterHub alone, as a fault would (what it started lives on)."""
        self.process.kill()
        self.process.wait()
        self.killed.append(self.process.pid)  # its process group: ended by stop()

    def stop(self) -> None:
        import signal
        import subprocess

        for group in self.killed:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._stop_left_proxy()

    def _stop_left_proxy(self) -> None:
        """The proxy (in a session of its own) of a hub that exited or was killed before it
        could stop it: named in the proxy's pid file, which a hub that stops removes."""
        import signal

        try:
            pid = int((self.root / "jupyterhub-proxy.pid").read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"configurable-http-proxy" in command and f"{self.port}".encode() in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def log_tail(self, lines: int = 40) -> str:
        """The log's last lines, a line repeated many times (a proxy's loop) shown once."""
        text = (self.root / "jupyterhub.log").read_text(errors="replace")
        kept: list[str] = []
        for line in text.splitlines():
            if kept and _untimed(kept[-1]) == _untimed(line):
                continue
            kept.append(line)
        return "\n".join(kept[-lines:])

    def api(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        through_proxy: bool = False,
        timeout: float = 30,
    ):
        """(status, parsed JSON or text) of a hub REST call (or a proxied user-server call)."""
        import urllib.error
        import urllib.request

        base = self.url if through_proxy else f"{self.url}/hub/api"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{base}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {HUB_TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def request_spawn(self, user: str, options: dict | None = None) -> None:
        """Create the user and ask for their server (the hub answers at once)."""
        self.api("POST", f"/users/{user}")
        status, body = self.api("POST", f"/users/{user}/server", {"user_options": options or {}})
        assert status in (201, 202), (status, body, self.log_tail())

    def spawn(self, user: str, options: dict | None = None, timeout: float = 90) -> dict:
        """Start the user's server and wait until it is ready; returns the user model."""
        self.request_spawn(user, options)
        return self.wait_ready(user, timeout)

    def wait_ready(self, user: str, timeout: float = 90) -> dict:
        """The user's model once their default server is ready; a spawn that failed
        fails at once."""

        def ready() -> dict | None:
            _, model = self.api("GET", f"/users/{user}")
            server = model["servers"].get("")
            if server and server["ready"]:
                return model
            if not server or not server.get("pending"):
                raise AssertionError(f"spawn failed: {model}\n{self.log_tail()}")
            return None

        return wait_until(
            ready, timeout, lambda: f"{user}'s spawn is ready\n{self.log_tail()}", 0.3
        )

    def job_of(self, user: str) -> str | None:
        """The id of the user's notebook job in the queue (by the spawner's marks)."""
        out = self.pool.run(
            "condor_q",
            "-allusers",
            "-af",
            "ClusterId",
            "ProcId",
            "-constraint",
            f'CondorSpawnerUser == "{user}"',
        ).stdout.split()
        return f"{out[0]}.{out[1]}" if out else None


# --- several real accounts on one pool ----------------------------------------------


class UnixUsers:
    """Real accounts made with ``useradd`` for one test; :meth:`remove_all` ends them."""

    def __init__(self, homes: Path) -> None:
        self.homes = homes
        self.names: list[str] = []

    def __call__(self, suffix: str = "") -> str:
        """A new account ``cs<6 random letters><suffix>`` with a 0700 home and bash; its name."""
        import secrets
        import string
        import subprocess

        name = "cs" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(6)) + suffix
        home = self.homes / name
        subprocess.run(
            ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", name],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.names.append(name)
        home.chmod(0o700)
        return name

    def remove_all(self, timeout: float = 10.0) -> None:
        """Kill what each account left running (bounded), ``userdel``, sweep its /tmp files
        (the demo's clean-up does the same for its accounts)."""
        import pwd
        import subprocess

        from hub_config.demo_auth import kill_processes, remove_tmp_files

        for name in self.names:
            uid = pwd.getpwnam(name).pw_uid
            kill_processes(uid, timeout)
            subprocess.run(["userdel", name], capture_output=True, check=False, timeout=30)
            remove_tmp_files(uid)
        self.names.clear()


class MultiUserPool(QueueLooks):
    """A pool run by root that several accounts use: ``run(tool, ..., user=NAME)`` is
    ``sudo -n -u NAME BIN/TOOL ...`` with no environment, exactly as a hub's ``run_as``
    calls a tool. ``base`` (root's home here) and ``bin`` come from the pool."""

    base: Path
    bin: Path

    def schedd_names(self) -> list[str]:
        return self.run("condor_status", "-schedd", "-af", "Name").stdout.split()

    def home(self, user: str | None) -> Path:
        import pwd

        return Path(pwd.getpwnam(user).pw_dir) if user else self.base

    def command(self, *cmd: str, user: str | None = None) -> list[str]:
        """The argv that runs a tool of this installation as ``user`` (root if None)."""
        tool = cmd[0] if "/" in cmd[0] else str(self.bin / cmd[0])
        return ["sudo", "-n", "-u", user, tool, *cmd[1:]] if user else [tool, *cmd[1:]]

    def root_env(self) -> dict[str, str]:
        """What root's own calls of a tool get (an account's call gets none)."""
        return {"PATH": "/usr/bin:/bin"}

    def run(
        self,
        *cmd: str,
        user: str | None = None,
        cwd: Path | None = None,
        input: str | None = None,
        timeout: float = 60,
    ):
        """Run a tool as ``user`` (root when None) in their home, with no environment."""
        import subprocess

        return subprocess.run(
            self.command(*cmd, user=user),
            cwd=cwd or self.home(user),
            env=self.root_env() if user is None else None,
            text=True,
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def write(self, user: str | None, name: str, text: str) -> Path:
        """A file in the user's home, owned by them."""
        import pwd

        path = self.home(user) / name
        path.write_text(textwrap.dedent(text))
        if user:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def submit(self, text: str, user: str | None = None, name: str = "job.sub") -> str:
        """Submit a description from the user's home as the user; the first job id."""
        self.write(user, name, text)
        result = self.run("condor_submit", "-terse", name, user=user)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()[0]


class SystemPool(MultiUserPool):
    """localpool installed under a prefix and run by root, used by several accounts."""

    def __init__(
        self,
        base: Path,
        network: str = "isolated",
        emulate: str | None = None,
        schedds: int = 1,
        start_options: tuple[str, ...] = (),
    ):
        self.backend = "localpool"
        self.base = base
        self.schedds = schedds
        self.start_options = start_options  # more for ``localpool start`` (--cpus 40 ...)
        self.root = base / "pool"
        self.prefix = base / "install"
        self.bin = self.prefix / "bin"
        self.network = network
        self.emulate = emulate

    def localpool(self, *args: str):
        import subprocess

        from tests import terminals

        argv = [sys.executable, "-m", "localpool.cli", "--dir", str(self.root), *args]
        return subprocess.run(
            # the pool's daemon with stock terminals (the job's sshd runs as its owner)
            terminals.command(argv) if args[:1] == ("start",) else argv,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        extra = ["--emulate", self.emulate] if self.emulate else []
        extra += ["--schedds", str(self.schedds)] if self.schedds > 1 else []
        extra += list(self.start_options)
        started = self.localpool(
            "start",
            "--network",
            self.network,
            "--cycle-seconds",
            "0.05",
            "--periodic-seconds",
            "0.5",
            *extra,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        installed = self.localpool("install", "--prefix", str(self.prefix))
        assert installed.returncode == 0, installed.stderr

    def stop(self) -> None:
        self.localpool("stop", "--remove-jobs")

    def schedd_off(self, name: str) -> bool:
        """Stop one schedd (its jobs keep running), as an outage of that access point."""
        return self.localpool("schedd-off", name).returncode == 0

    def schedd_on(self, name: str) -> bool:
        return self.localpool("schedd-on", name).returncode == 0


EVENT = re.compile(r"^(\d{3}) \((\d+)\.(\d+)\.\d+\) (\S+ \S+) ")


def node_log_events(path: Path) -> list[tuple[int, int, str]]:
    """(event code, cluster, node name) of each event of a node log, in order."""
    names: dict[int, str] = {}
    out = []
    for block in path.read_text().split("...\n"):
        lines = block.strip("\n").splitlines()
        match = EVENT.match(lines[0]) if lines else None
        if not match:
            continue
        code, cluster = int(match.group(1)), int(match.group(2))
        if code == 0:
            note = [line.strip() for line in lines[1:] if "DAG Node:" in line]
            names[cluster] = note[0].split(": ", 1)[1]
        out.append((code, cluster, names.get(cluster, "?")))
    return out
