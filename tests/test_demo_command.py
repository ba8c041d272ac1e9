"""The README's demo command on a clean checkout, until a spawn through the REST API works."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOKEN = "demo-command-test-token-0123456789abcdef"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the demo's jobs need network namespaces"),
]


def api(method: str, path: str, body: object = None) -> tuple[int, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:8000/hub/api{path}",
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


def test_the_readme_demo_command_on_a_clean_checkout(tmp_path):
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.fail("port 8000 is taken: the demo needs it")
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(REPO), str(checkout)], check=True)
    readme = (checkout / "README.md").read_text()
    assert "./scripts/demo" in readme
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115
    demo = subprocess.Popen(
        ["./scripts/demo"],
        cwd=checkout,
        stdout=log,
        stderr=log,
        env={**os.environ, "CONDORSPAWNER_DEMO_TOKEN": TOKEN},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900  # a fresh checkout installs its own environment
        while time.monotonic() < deadline:
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            try:
                if api("GET", "/")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the demo's hub never answered on port 8000")
        assert api("POST", "/users/reader")[0] in (201, 409)
        assert api("POST", "/users/reader/server", {"user_options": {"cpus": 2}})[0] in (201, 202)
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and not ready:
            server = api("GET", "/users/reader")[1]["servers"].get("")
            assert server, "the spawn failed"
            ready = server["ready"]
            time.sleep(0.5)
        assert ready
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=120)
        log.close()
    text = (tmp_path / "demo.log").read_text()
    assert "log in with any user name and the password: condor-demo" in text
    assert "localpool: stopped" in text
