"""Which hub users may get a notebook job: ordinary Unix accounts only.

With a run-as prefix the hub acts as the Unix account named like the hub
user. Root, system accounts (below a minimum uid) and accounts on a deny list
(``condor``, ``nobody``, ...) are refused before anything is written or
submitted: a hub login must never become a job, a file or an ssh session of
such an account.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable

DEFAULT_DENIED = ("root", "condor", "nobody", "daemon", "bin", "sys", "sshd")


class AccountRefused(PermissionError):
    """This user may not have a notebook job; the message says why."""


def check_account(name: str, *, min_uid: int, denied: Iterable[str]) -> pwd.struct_passwd:
    """The user's account, if it may have a notebook job."""
    if name in set(denied):
        raise AccountRefused(f"the account {name!r} may not run notebook servers on this hub")
    try:
        account = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        raise AccountRefused(f"there is no account {name!r} on this hub") from None
    if account.pw_uid == os.getuid() and os.getuid() != 0:
        raise AccountRefused(f"the account {name!r} is the hub's own; it may not run notebooks")
    if account.pw_uid == 0 or account.pw_uid < min_uid:
        raise AccountRefused(
            f"the account {name!r} is a system account (uid {account.pw_uid} is below "
            f"{min_uid}); it may not run notebook servers on this hub"
        )
    return account
