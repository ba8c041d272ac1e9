"""The README's demo command on a clean checkout, until a spawn through the REST API works.

The demo runs as a site runs the hub: the user the REST API creates becomes the
Unix account ``demo-<name>``, its job runs as that account, Ctrl-C keeps the
account, and ``./scripts/demo --clean`` removes it (and the demo's directory).
Also the driver the browser test uses (:class:`Demo`).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hub_config.demo_auth import account_exists, recorded_accounts
from proxy_tunnel import free_port

REPO = Path(__file__).resolve().parents[1]
TOKEN = "demo-command-test-token-0123456789abcdef"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the demo creates accounts: it needs root"),
]


class Demo:
    """The demo command of a checkout (``command`` run there), its Ctrl-C and its ``--clean``."""

    def __init__(
        self,
        command: list[str],
        cwd: Path,
        log: Path,
        *,
        demo_dir: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``demo_dir``/``port`` None: the demo's defaults (``<cwd>/.demo``, 8000)."""
        self.command, self.cwd, self.log_path, self.env = command, cwd, log, env
        self.options = [*(["--dir", str(demo_dir)] if demo_dir else [])]
        self.options += ["--port", str(port)] if port else []
        self.dir = demo_dir or cwd / ".demo"
        self.url = f"http://127.0.0.1:{port or 8000}"
        self.bin = self.dir / "install" / "bin"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> None:
        """Start the demo and wait (bounded) until its hub's login page answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*self.command, *self.options],
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(self.failure("the demo exited"))
            try:
                urllib.request.urlopen(f"{self.url}/hub/login", timeout=2)
                return
            except OSError:
                time.sleep(1)
        pytest.fail(self.failure(f"the demo's hub never answered at {self.url}"))

    def log(self) -> str:
        """What the demo printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def hub_log(self) -> str:
        """The hub's log (in the demo directory, which --clean removes)."""
        path = self.dir / "jupyterhub.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def failure(self, what: str) -> str:
        """``what``, then the end of the demo's output and of the hub's log."""
        return f"{what}\n{self.log()[-3000:]}\n--- hub log:\n{self.hub_log()[-5000:]}"

    def stop(self, timeout: float = 150) -> None:
        """Ctrl-C (SIGINT to the demo's process group, as a terminal sends it); wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            pytest.fail(self.failure(f"the demo did not stop within {timeout:g} s"))

    def clean(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The demo's ``--clean`` on its directory."""
        return subprocess.run(
            [*self.command, "--clean", *self.options],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def accounts(self) -> list[str]:
        """The accounts the demo recorded (``<demo dir>/accounts.txt``)."""
        return recorded_accounts(self.dir / "accounts.txt")

    def condor(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An installed tool of the demo's pool, run as root with no environment."""
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def api(demo: Demo, method: str, path: str, body: object = None) -> tuple[int, object]:
    request = urllib.request.Request(
        f"{demo.url}/hub/api{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_readme_demo_command_on_a_clean_checkout(tmp_path, public_tmp):
    # a login name of this run's own and a free port (the README's 8000 with --port):
    # another test run or a demo on this machine is left alone
    name = "reader" + secrets.token_hex(3)
    account = f"demo-{name}"
    if account_exists(account):
        pytest.fail(f"an account {account} exists already: the test would remove it")
    name_existed = account_exists(name)
    checkout = public_tmp / "checkout"  # every account enters it (its .venv runs the jobs)
    subprocess.run(["git", "clone", "-q", str(REPO), str(checkout)], check=True, timeout=120)
    readme = (checkout / "README.md").read_text()
    assert "./scripts/demo" in readme and "./scripts/demo --clean" in readme
    demo = Demo(
        ["./scripts/demo"],
        checkout,
        tmp_path / "demo.log",
        env={**os.environ, "CONDORSPAWNER_DEMO_TOKEN": TOKEN},
        port=free_port(),
    )
    try:
        demo.start(timeout=900)  # a fresh checkout installs its own environment
        # the hub stands only for demo accounts: any other name is refused
        assert api(demo, "POST", f"/users/{name}")[0] == 400
        assert account_exists(name) == name_existed
        assert api(demo, "POST", f"/users/{account}")[0] == 201
        entry = pwd.getpwnam(account)
        assert entry.pw_uid >= 1000 and entry.pw_dir == f"/home/{account}"
        assert demo.accounts() == [account]
        assert api(demo, "POST", f"/users/{account}/server", {"user_options": {"cpus": 2}})[0] in (
            201,
            202,
        )
        deadline = time.monotonic() + 180
        ready = False
        while time.monotonic() < deadline and not ready:
            server = api(demo, "GET", f"/users/{account}")[1]["servers"].get("")
            assert server, demo.failure("the spawn failed")
            ready = server["ready"]
            time.sleep(0.5)
        assert ready
        owners = demo.condor(
            "condor_q",
            "-allusers",
            "-af",
            "Owner",
            "-constraint",
            f'CondorSpawnerUser == "{account}"',
        ).stdout.split()
        assert owners == [account]
    finally:
        try:
            demo.stop()
        finally:
            cleaned = demo.clean()
    text = demo.log()
    assert "the password: condor-demo" in text
    # a fresh checkout's first run says what it installs while it does
    for step in ("configurable-http-proxy", "condorspawner with JupyterHub"):
        assert f"bootstrap: installing {step}" in text, text[:2000]
    assert "demo: stopping the pool and removing its jobs" in text
    assert f"Kept: the accounts demo-* ({account})" in text
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert f"removing the account {account}" in cleaned.stdout
    assert not account_exists(account)
    assert not Path(f"/home/{account}").exists()
    assert not demo.dir.exists()
