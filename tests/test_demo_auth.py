"""The demo's authenticator: login names, the accounts it stands for, and their record.

Accounts are made by a stand-in command, but for one real ``useradd`` (root only)
that checks the home it makes; the demo command and browser tests make more.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado import web

from hub_config.demo_auth import (
    REFUSED,
    USERADD,
    DemoAuthenticator,
    account_for,
    record_account,
    recorded_accounts,
    remove_account,
)

pytestmark = pytest.mark.filterwarnings(  # JupyterHub 5.3+; the demo keeps the shared password
    "ignore:DummyAuthenticator.password is deprecated:DeprecationWarning"
)
UNKNOWN = "demo-zq9nosuchacct"  # an account no machine has


@pytest.mark.parametrize(
    ("login", "account"),
    [
        ("alice", "demo-alice"),
        ("user2", "demo-user2"),
        ("Alice", "demo-alice"),
        ("7", "demo-7"),
        ("a" * 20, "demo-" + "a" * 20),
    ],
)
def test_a_valid_name_stands_for_demo_name(login, account):
    assert account_for(login) == account


@pytest.mark.parametrize(
    "login", ["", "a" * 21, "a-b", "a_b", "a b", " alice", "älice", "../x", "demo-x", "root;"]
)
def test_any_other_name_is_refused_with_the_reason(login):
    with pytest.raises(ValueError, match="1 to 20 lowercase letters and digits"):
        account_for(login)


def authenticator(tmp_path: Path, command: list[str] | None = None) -> DemoAuthenticator:
    auth = DemoAuthenticator(password="condor-demo", accounts_file=str(tmp_path / "accounts.txt"))
    if command is not None:
        auth.useradd_command = command
    return auth


async def test_login_checks_the_password_then_the_name(tmp_path):
    auth = authenticator(tmp_path)
    assert await auth.authenticate(None, {"username": "alice", "password": "no"}) is None
    assert await auth.authenticate(None, {"username": "alice", "password": "condor-demo"}) == (
        "demo-alice"
    )
    with pytest.raises(web.HTTPError) as refused:
        await auth.authenticate(None, {"username": "Bad_Name", "password": "condor-demo"})
    assert refused.value.status_code == 403 and refused.value.log_message == REFUSED
    assert "%" not in REFUSED  # tornado formats log_message with its args


async def test_the_whole_login_gives_the_account_name(tmp_path):
    auth = authenticator(tmp_path)
    model = await auth.get_authenticated_user(None, {"username": "bob", "password": "condor-demo"})
    assert model["name"] == "demo-bob"


def test_the_hub_stands_only_for_demo_accounts(tmp_path):
    auth = authenticator(tmp_path)
    assert auth.validate_username("demo-alice")
    for name in ("alice", "root", "demo-", "demo-a-b", "demo-" + "a" * 21, "Demo-alice"):
        assert not auth.validate_username(name), name


async def test_a_missing_account_is_recorded_then_made(tmp_path):
    made = tmp_path / "made"
    command = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; "
        f"assert {UNKNOWN!r} in Path({str(tmp_path / 'accounts.txt')!r}).read_text(); "
        f"Path({str(made)!r}).write_text(sys.argv[1])",
    ]
    auth = authenticator(tmp_path, command)
    await auth.add_user(SimpleNamespace(name=UNKNOWN))
    assert made.read_text() == UNKNOWN  # the command saw the name already recorded
    assert recorded_accounts(tmp_path / "accounts.txt") == [UNKNOWN]


@pytest.mark.skipif(os.geteuid() != 0, reason="useradd needs root")
async def test_a_demo_account_home_is_private(tmp_path, public_tmp):
    """Demo users share one machine: one user's notebooks are not another's to read."""
    name = "demo-zq" + secrets.token_hex(4)
    auth = authenticator(tmp_path, [*USERADD, "--base-dir", str(public_tmp)])
    try:
        await auth.add_user(SimpleNamespace(name=name))
        home = public_tmp / name
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True, timeout=30)


async def test_a_failing_useradd_fails_the_login_and_keeps_the_record(tmp_path):
    command = [sys.executable, "-c", "import sys; print('useradd: no'); sys.exit(9)"]
    auth = authenticator(tmp_path, command)
    with pytest.raises(RuntimeError, match=r"creating the account .* failed \(9\): useradd: no"):
        await auth.add_user(SimpleNamespace(name=UNKNOWN))
    assert recorded_accounts(tmp_path / "accounts.txt") == [UNKNOWN]


async def test_a_slow_useradd_is_bounded(tmp_path):
    auth = authenticator(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"])
    auth.useradd_timeout = 0.5
    with pytest.raises(RuntimeError, match=r"longer than 0\.5 s"):
        await auth.add_user(SimpleNamespace(name=UNKNOWN))


async def test_no_account_is_made_for_another_name(tmp_path):
    made = tmp_path / "made"
    command = [sys.executable, "-c", f"open({str(made)!r}, 'w')"]
    auth = authenticator(tmp_path, command)
    for name in ("reader", "root", "demo-x;rm"):
        with pytest.raises(ValueError):
            await auth.add_user(SimpleNamespace(name=name))
    assert not made.exists()
    assert recorded_accounts(tmp_path / "accounts.txt") == []


async def test_an_existing_account_is_used_as_it_is(tmp_path, monkeypatch):
    import pwd

    made = tmp_path / "made"
    auth = authenticator(tmp_path, [sys.executable, "-c", f"open({str(made)!r}, 'w')"])
    monkeypatch.setattr(pwd, "getpwnam", lambda name: SimpleNamespace(pw_name=name))
    await auth.add_user(SimpleNamespace(name="demo-alice"))
    assert not made.exists()
    assert recorded_accounts(tmp_path / "accounts.txt") == []  # not ours: --clean leaves it


def test_the_record_holds_each_name_once(tmp_path):
    record = tmp_path / "accounts.txt"
    for name in ("demo-a", "demo-b", "demo-a"):
        record_account(record, name)
    assert record.read_text() == "demo-a\ndemo-b\n"
    assert recorded_accounts(tmp_path / "missing.txt") == []


def test_clean_touches_only_demo_accounts():
    said: list[str] = []
    for name in ("root", "nobody", "demo-a;b", "demo-"):
        assert remove_account(name, said.append) is False
    assert all("not the name of a demo account" in line for line in said)
    said.clear()
    assert remove_account(UNKNOWN, said.append) is True
    assert said == [f"the account {UNKNOWN} is already gone"]


def test_clean_leaves_a_system_account_named_like_a_demo_one(monkeypatch):
    import pwd

    monkeypatch.setattr(pwd, "getpwnam", lambda name: SimpleNamespace(pw_uid=999, pw_dir="/"))
    said: list[str] = []
    assert remove_account("demo-alice", said.append) is False
    assert said == ["not removing demo-alice: uid 999 is a system account's"]
