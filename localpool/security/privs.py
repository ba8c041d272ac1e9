"""Acting in a user's files with the user's file-system identity, never root's.

The pool process runs as root, but whatever it reads or writes on a user's
behalf (a submit description, input and output files, the event log, the
ssh session files in a job's scratch directory) it does as that user, so a
symlink the user planted to a root-only file gets them nothing. Linux keeps
a file-system uid and gid per thread (``setfsuid``/``setfsgid``): switching
them leaves the real and effective ids (signals, ``/proc``, the pool's own
state) alone, and a thread (the starter's chirp server) switches only itself.
Supplementary groups are per process; callers that serve one user for good
(a request child, a starter) set them once with :func:`adopt_groups`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Account:
    """A local account as the pool sees it: who asked, or who owns a job."""

    name: str
    uid: int
    gid: int
    home: str

    @property
    def groups(self) -> list[int]:
        try:
            return os.getgrouplist(self.name, self.gid)
        except OSError:
            return [self.gid]


def account_of_uid(uid: int) -> Account:
    """The account of a uid (a caller identified by SO_PEERCRED)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return Account(str(uid), uid, uid, "/")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def account_named(name: str) -> Account | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _fsids() -> tuple[int, int]:
    """The current file-system uid and gid (setfsuid(-1) changes nothing, returns the old)."""
    return _libc.setfsuid(-1), _libc.setfsgid(-1)


def _set(uid: int, gid: int) -> None:
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    if _fsids() != (uid, gid):
        raise PermissionError(f"cannot take file-system identity {uid}:{gid}")


def adopt_groups(account: Account) -> None:
    """Take the account's supplementary groups (process-wide: call before threads start)."""
    if os.geteuid() == 0:
        os.setgroups(account.groups)


@contextlib.contextmanager
def as_user(account: Account | None) -> Iterator[None]:
    """File operations inside the block happen as ``account`` (no-op when not root)."""
    if account is None or os.geteuid() != 0:
        yield
        return
    before = _fsids()
    groups = os.getgroups()
    wanted = account.groups
    if sorted(set(groups)) != sorted(set(wanted)):
        os.setgroups(wanted)
    _set(account.uid, account.gid)
    try:
        yield
    finally:
        _set(*before)
        if sorted(set(groups)) != sorted(set(wanted)):
            os.setgroups(groups)


def as_owner(owner: str | None) -> contextlib.AbstractContextManager[None]:
    """``as_user`` for a job's Owner name; an unknown owner gets nobody's rights."""
    if os.geteuid() != 0 or owner is None:
        return contextlib.nullcontext()
    account = account_named(owner)
    if account is None:
        account = account_of_uid(65534)
    return as_user(account)
