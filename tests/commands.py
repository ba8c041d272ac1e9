"""The project's own commands as a user runs them, for the tests: the demo, ``condorsub
lab``, a request through a lab's tunnel, and the columns ``condorsub queue`` prints.

Shared by the test modules that drive them (no test module imports another's helpers).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hub_config.demo_auth import recorded_accounts
from tests.harness import CONDORSUB, site_for_tests
from tests.waiting import wait_until


def site_env(tmp_path: Path, base: dict[str, str]) -> dict[str, str]:
    site_file = tmp_path / "site.toml"
    site_file.write_text(site_for_tests(tmp_path / "work"))
    return {**base, "CONDORSPAWNER_SITE": str(site_file)}


def read_line(proc: subprocess.Popen, pattern: str, timeout: float, err: Path) -> str:
    """The first line of the process's stdout that matches (bounded in time)."""
    seen: list[str] = []

    def said() -> str:
        return f"stdout: {''.join(seen)!r}; stderr: {err.read_text()}"

    def matching_line() -> str | None:
        line = proc.stdout.readline() if select.select([proc.stdout], [], [], 0.5)[0] else ""
        seen.append(line)
        if re.search(pattern, line):
            return line.strip()
        if not line and proc.poll() is not None:
            raise AssertionError(f"ended (rc {proc.returncode}) before a line matched; {said()}")
        return None

    what = lambda: f"a line matching {pattern!r}; {said()}"  # noqa: E731
    return wait_until(matching_line, timeout, what, 0.05)


def call(url: str, method: str = "GET", token: str | None = None, body: dict | None = None):
    """(status, parsed JSON body) of one request through the tunnel."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None


class Lab:
    """A running ``condorsub lab`` in its own process group, and what it printed."""

    def __init__(self, pool, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.err_file = tmp_path / "lab.err"
        with self.err_file.open("w") as err:
            self.proc = subprocess.Popen(
                [CONDORSUB, "lab", *args],
                cwd=pool.submit_dir,
                env={**site_env(tmp_path, pool.env), **(env or {})},
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,  # its own process group: SIGINT to it is a Ctrl-C
            )
        url = read_line(self.proc, r"^http://127\.0\.0\.1:\d+/lab\?token=", 180, self.err_file)
        self.base, self.token = url.split("/lab?token=")
        self.job = re.search(r"job (\d+\.\d+)", self.stderr).group(1)
        self.submit_dir = next((pool.submit_dir / "condorsub-jobs").iterdir())

    @property
    def stderr(self) -> str:
        return self.err_file.read_text()

    def write(self, name: str, text: str) -> None:
        """A file in the job's work directory, through JupyterLab's contents API."""
        body = {"type": "file", "format": "text", "content": text}
        status, _ = call(f"{self.base}/api/contents/{name}", "PUT", self.token, body)
        assert status in (200, 201)

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


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

        def answers() -> bool:
            if self.process.poll() is not None:
                pytest.fail(self.failure("the demo exited"))
            try:
                urllib.request.urlopen(f"{self.url}/hub/login", timeout=2)
            except OSError:
                return False
            return True

        wait_until(
            answers, timeout, lambda: self.failure(f"the demo's hub answers at {self.url}"), 1
        )

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


QUEUE_COLUMNS = ["ID", "OWNER", "SUBMITTED", "RUNTIME", "STATUS", "OS", "CPUS", "MEMORY", "COMMAND"]
