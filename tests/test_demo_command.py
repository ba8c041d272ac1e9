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
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hub_config.demo_auth import account_exists
from proxy_tunnel import free_port
from tests.commands import Demo
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
TOKEN = "demo-command-test-token-0123456789abcdef"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the demo creates accounts: it needs root"),
]


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

        def ready() -> bool:
            server = api(demo, "GET", f"/users/{account}")[1]["servers"].get("")
            assert server, demo.failure("the spawn failed")
            return server["ready"]

        wait_until(ready, 180, lambda: demo.failure("the spawn is ready"), 0.5)
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
