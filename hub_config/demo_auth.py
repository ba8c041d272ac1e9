"""The demo's accounts: each login name becomes a real Unix account ``demo-<name>``.

``DemoAuthenticator`` is JupyterHub's ``DummyAuthenticator`` (one shared
password) whose hub users are real accounts, as on a site: ``authenticate``
checks the password and the name (1 to 20 lowercase letters and digits) and
returns ``demo-<name>``; ``add_user``, which JupyterHub calls when a user is
first added (first login, REST API) and for every known user at start-up,
creates the account when it is missing (``useradd --create-home --shell
/bin/bash``: a 0700 home under /home, a uid from 1000 up) and records it in
``accounts_file`` before creating it, so that ``scripts/demo --clean`` can
remove every account the demo made. The spawner then runs that user's job
as that account (the site's ``run_as``). ``remove_account`` removes such an
account again (``--clean``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyterhub.auth import DummyAuthenticator
from jupyterhub.utils import maybe_future
from tornado import web
from traitlets import Float, List, Unicode

from condorspawner.processes import communicate_within, kill_child

PREFIX = "demo-"
LOGIN_NAME = re.compile(r"[a-z0-9]{1,20}")
ACCOUNT_NAME = re.compile(rf"{PREFIX}[a-z0-9]{{1,20}}")
# homes 0700 (Debian's useradd makes them 0755): demo users share one machine
USERADD = ["useradd", "--create-home", "-K", "HOME_MODE=0700", "--shell", "/bin/bash"]
REFUSED = (
    "Demo login names are 1 to 20 lowercase letters and digits (a-z, 0-9), "
    "for example alice or user2: each name becomes the Unix account demo-<name>."
)


def account_for(login: str) -> str:
    """The account a login name stands for (``demo-<name>``); ValueError if it is not valid.

    The name is lowercased first, as JupyterHub's own ``normalize_username`` does.
    """
    name = login.lower()
    if not LOGIN_NAME.fullmatch(name):
        raise ValueError(REFUSED)
    return PREFIX + name


def is_demo_account(name: str) -> bool:
    """Whether ``name`` has the form of an account the demo makes."""
    return bool(ACCOUNT_NAME.fullmatch(name))


def recorded_accounts(path: Path) -> list[str]:
    """The account names recorded in ``path`` (one a line), in order, without repeats."""
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return []
    return list(dict.fromkeys(lines))


def record_account(path: Path, name: str) -> None:
    """Add ``name`` to the record (a 0644 file of names, one a line), unless it is there."""
    if name in recorded_accounts(path):
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name}\n".encode())
    finally:
        os.close(fd)


class DemoAuthenticator(DummyAuthenticator):
    """The shared demo password; hub users are Unix accounts ``demo-<name>``, made on demand."""

    accounts_file = Unicode(
        config=True,
        help="""Where every account this authenticator creates is recorded, one name a
        line, before it is created (scripts/demo --clean removes them). Required.""",
    )
    useradd_command = List(
        Unicode(),
        default_value=USERADD,
        config=True,
        help="The command that creates an account; the name is appended.",
    )
    useradd_timeout = Float(30.0, config=True, help="Seconds useradd may take.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._accounts_lock = asyncio.Lock()

    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        """``demo-<name>`` for the demo password and a valid name; None for a wrong password.

        A name that cannot become an account is refused with a 403 and a message
        the login page shows.
        """
        login = await super().authenticate(handler, data)
        if login is None:
            return None
        try:
            return account_for(login)
        except ValueError as err:
            raise web.HTTPError(403, str(err)) from None

    def validate_username(self, username: str) -> bool:
        """Only ``demo-<name>`` users: the hub never stands for any other account."""
        return super().validate_username(username) and is_demo_account(username)

    async def add_user(self, user: Any) -> None:
        """Create the user's account when it is missing (idempotent, as JupyterHub requires)."""
        # validates the name (ValueError) and keeps allowed_users up to date
        await maybe_future(super().add_user(user))
        async with self._accounts_lock:
            await self._ensure_account(user.name)

    async def _ensure_account(self, name: str) -> None:
        try:
            pwd.getpwnam(name)
            return
        except KeyError:
            pass
        if not self.accounts_file:
            raise RuntimeError("DemoAuthenticator.accounts_file is not set")
        record_account(Path(self.accounts_file), name)
        self.log.info("Creating the Unix account %s", name)
        proc = await asyncio.create_subprocess_exec(
            *self.useradd_command,
            name,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await communicate_within(proc, None, self.useradd_timeout, kill_child)
        except TimeoutError:
            raise RuntimeError(
                f"creating the account {name} took longer than {self.useradd_timeout:g} s"
            ) from None
        if proc.returncode != 0:
            raise RuntimeError(
                f"creating the account {name} failed ({proc.returncode}): "
                f"{output.decode(errors='replace').strip()}"
            )


# --- removing them again (scripts/demo --clean) -----------------------------------

MIN_UID = 1000  # the spawner's min_uid: never remove an account below it
KILL_TIMEOUT = 10.0  # seconds for an account's processes to go, before userdel


def account_exists(name: str) -> bool:
    """Whether the Unix account ``name`` exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def processes_of(uid: int) -> list[int]:
    """Pids of the processes whose real or effective uid is ``uid``."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    if uid in {int(v) for v in line.split()[1:3]}:
                        pids.append(int(status.parent.name))
                    break
        except (OSError, ValueError):
            continue
    return pids


def kill_processes(uid: int, timeout: float = KILL_TIMEOUT) -> list[int]:
    """SIGKILL every process of ``uid`` until none is left or ``timeout`` passes; the rest."""
    deadline = time.monotonic() + timeout
    while (pids := processes_of(uid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return pids


def remove_tmp_files(uid: int) -> None:
    """What the account left directly in /tmp (notebook rendezvous and ssh session dirs)."""
    for entry in Path("/tmp").iterdir():  # noqa: S108 (the shared /tmp, by owner)
        with contextlib.suppress(OSError):
            if entry.lstat().st_uid != uid:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()


def remove_account(name: str, say: Callable[[str], None]) -> bool:
    """End a demo account's processes (bounded), ``userdel --remove`` it and sweep /tmp.

    True when the account is gone; only ``demo-<name>`` accounts from ``MIN_UID`` up
    are touched. ``say`` gets one line per step.
    """
    if not is_demo_account(name):
        say(f"not removing {name!r}: not the name of a demo account")
        return False
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        say(f"the account {name} is already gone")
        return True
    if account.pw_uid < MIN_UID:
        say(f"not removing {name}: uid {account.pw_uid} is a system account's")
        return False
    say(f"removing the account {name} and its home {account.pw_dir}")
    left = kill_processes(account.pw_uid)
    if left:
        say(f"  processes of {name} still there after {KILL_TIMEOUT:g} s: {left}")
    result = subprocess.run(
        ["userdel", "--remove", name], capture_output=True, text=True, timeout=60, check=False
    )
    if account_exists(name):
        say(f"  userdel {name} failed ({result.returncode}): {result.stderr.strip()}")
        return False
    if Path(account.pw_dir).exists():
        say(f"  {account.pw_dir} is still there: {result.stderr.strip()}")
    remove_tmp_files(account.pw_uid)
    return True
