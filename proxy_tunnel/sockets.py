"""Where the hub-side ends of tunnels listen: a private directory per account.

A tunnel's ``ssh`` runs as the notebook's user and listens on a Unix socket
here, which the hub relays its held port to (:mod:`proxy_tunnel.relay`). The
directory is the user's own (0700) inside one the hub owns (0711: others may
pass, not list), on the hub's local disk: no other account can connect to the
socket or put one in its place, and a home directory on NFS (where root may
not enter) is never needed.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

SYSTEM_ROOT = Path("/run/condorspawner")


def default_root() -> Path:
    """/run/condorspawner for a hub running as root; else one in the temporary directory."""
    if os.geteuid() == 0:
        return SYSTEM_ROOT
    return Path(tempfile.gettempdir()) / f"condorspawner-tunnels-{os.geteuid()}"


def _ensure(path: Path, mode: int, uid: int) -> None:
    """``path`` a real directory of ``uid``'s that nobody else may change (or enter, per mode)."""
    try:
        path.mkdir(mode=mode)
        if uid != os.geteuid():
            os.chown(path, uid, -1)
        path.chmod(mode)
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
        raise PermissionError(
            f"{path} is not a directory of uid {uid} that only it may change: "
            "the tunnel's local end cannot go there"
        )
    if stat.S_IMODE(info.st_mode) != mode:
        path.chmod(mode)


def socket_directory(uid: int | None = None, root: Path | None = None) -> Path:
    """The private directory for tunnels run as ``uid`` (default: this process's account).

    Raises PermissionError when it cannot be made safely (another account made the
    path first, or this process may not give the directory to ``uid``).
    """
    uid = os.geteuid() if uid is None else uid
    root = default_root() if root is None else root
    _ensure(root, 0o711, os.geteuid())
    directory = root / str(uid)
    _ensure(directory, 0o700, uid)
    return directory
