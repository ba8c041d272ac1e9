"""The hub–job protocol: what the hub sends a notebook job, and where each side listens.

Nothing the hub connects to is read from the job ad (its owner can change it
with chirp or ``condor_qedit``) or from a TCP port on the execute point's
loopback (another user's job may squat it). Instead the hub picks a secret per
spawn, the *rendezvous*, and sends it in the job's private file. From it and
the run's ``JobCurrentStartDate`` (in the job ad HTCondor hands the job, and
in the queue) both sides derive one private directory per run of the job
(0700, made by the launcher; a name nobody can guess, so nobody else can make
it first, not even after an eviction showed the previous run's name):

- ``nb.sock``: the notebook server listens there (a Unix socket, not a port);
  the hub's tunnel forwards ``127.0.0.1:L`` on the hub to it (``ssh -L``).
- ``hub-<generation>.sock``: each tunnel generation forwards one of these back
  to the hub API (``ssh -R``). The launcher owns the hub-API port the server
  talks to for the job's whole life and passes each connection to the newest
  such socket, so a new tunnel never collides with an old one that is still
  alive (a hub restart, a tunnel left behind).

Only the job's owner (and root) can enter the directory, so whatever answers
there is the owner's own server: the browser's traffic and the API token go
to nobody else.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

SECRET_FILE = "condorspawner.secret"  # noqa: S105 (a file name)
NOTEBOOK_SOCKET = "nb.sock"
HUB_SOCKET_RE = re.compile(r"^hub-([0-9a-f]{8,32})\.sock\Z")

HUB_API_MODES = ("tunnel", "direct", "none")
_NONCE_RE = re.compile(r"^[0-9a-f]{32}\Z")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\Z")  # a JWT
TOKEN_DIR_ENV = "_CONDOR_SEC_TOKEN_DIRECTORY"  # noqa: S105 (a variable's name)
_ROOT_RE = re.compile(r"^/[A-Za-z0-9._/-]{0,40}\Z")


class ProtocolError(ValueError):
    """A value of the hub–job protocol that is not what it must be."""


@dataclass(frozen=True)
class Rendezvous:
    """The per-spawn secret and the private directory in the job derived from it."""

    nonce: str
    root: str = "/tmp"  # noqa: S108 (a private 0700 directory with a secret name)
    run: int | None = None  # JobCurrentStartDate of the run the directory belongs to

    def __post_init__(self) -> None:
        if not _NONCE_RE.match(self.nonce):
            raise ProtocolError("the rendezvous nonce must be 32 lowercase hex digits")
        if not _ROOT_RE.match(self.root) or ".." in self.root.split("/"):
            raise ProtocolError(f"{self.root!r} is not a plain absolute directory")

    @classmethod
    def new(cls, root: str = "/tmp") -> Rendezvous:  # noqa: S108
        return cls(secrets.token_hex(16), root)

    def for_run(self, run: int | None) -> Rendezvous:
        return replace(self, run=run)

    @property
    def directory(self) -> str:
        key = self.nonce if self.run is None else _digest(f"{self.nonce}:{self.run}")
        return f"{self.root.rstrip('/')}/condorspawner-{key}"

    @property
    def notebook_socket(self) -> str:
        return f"{self.directory}/{NOTEBOOK_SOCKET}"

    def hub_socket(self, generation: str) -> str:
        if not HUB_SOCKET_RE.match(f"hub-{generation}.sock"):
            raise ProtocolError(f"{generation!r} is not a tunnel generation")
        return f"{self.directory}/hub-{generation}.sock"

    @property
    def tag(self) -> str:
        """What this spawn's tunnel processes carry on their command lines (an ssh
        ``SetEnv``): found again after a hub restart; it reveals no directory."""
        return f"condorspawner-tunnel-{_digest(self.nonce)[:16]}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def new_generation() -> str:
    """A fresh name for one tunnel generation's hub-API socket."""
    return secrets.token_hex(8)


@dataclass
class JobSecret:
    """The private file: what the hub hands the launcher, never in the job ad."""

    env: dict[str, str]
    rendezvous: Rendezvous
    site: str | None = None  # the site settings condorsub needs in the job (TOML)
    # "tunnel" (through ssh -R), "direct", or "none": no hub (condorsub lab), the launcher
    # runs JupyterLab itself with the token in env (JUPYTER_TOKEN)
    hub_api: str = "tunnel"
    # an HTCondor IDTOKEN fetched as the user (site switch notebook.submit_token), so
    # condorsub in the job can submit and query on a pool without a shared file system
    token: str | None = None
    # the site accepts jobs that run as another account than their Owner's (nobody, slot
    # users, a pilot): then the server's uid-based isolation is shared with other users
    shared_account: bool = False

    def __post_init__(self) -> None:
        if self.hub_api not in HUB_API_MODES:
            raise ProtocolError(f"hub_api must be one of {', '.join(HUB_API_MODES)}")
        if self.hub_api == "none" and not self.env.get("JUPYTER_TOKEN"):
            # no hub to authenticate the browser: the token is JupyterLab's only guard
            raise ProtocolError('hub_api "none" needs a JUPYTER_TOKEN in the environment')

    def dumps(self) -> str:
        data = {
            "env": self.env,
            "rendezvous": {"nonce": self.rendezvous.nonce, "root": self.rendezvous.root},
            "site": self.site,
            "hub_api": self.hub_api,
        }
        if self.token:
            data["token"] = self.token
        if self.shared_account:
            data["shared_account"] = True
        return json.dumps(data)

    @classmethod
    def loads(cls, text: str) -> JobSecret:
        try:
            data = json.loads(text)
            env = data["env"]
            meeting = Rendezvous(nonce=data["rendezvous"]["nonce"], root=data["rendezvous"]["root"])
        except (ValueError, KeyError, TypeError) as err:
            raise ProtocolError(f"not a condorspawner private file ({err})") from None
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ProtocolError("the private file holds no environment")
        site = data.get("site")
        hub_api = data.get("hub_api", "tunnel")
        if (site is not None and not isinstance(site, str)) or not isinstance(hub_api, str):
            raise ProtocolError("the private file's site or hub_api is malformed")
        token = data.get("token")
        if token is not None and (not isinstance(token, str) or not _TOKEN_RE.match(token)):
            raise ProtocolError("the private file's token is malformed")
        shared = data.get("shared_account", False)
        if not isinstance(shared, bool):
            raise ProtocolError("the private file's shared_account is malformed")
        return cls(
            env=env,
            rendezvous=meeting,
            site=site,
            hub_api=hub_api,
            token=token,
            shared_account=shared,
        )


def job_start(ad: dict[str, Any]) -> int | None:
    """Which run of the job an ad describes (JobCurrentStartDate, set by HTCondor)."""
    return int_value(ad.get("JobCurrentStartDate"))


def int_value(value: Any) -> int | None:
    """An ad's integer (a ClassAd boolean is no number), or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = [
    "SECRET_FILE",
    "JobSecret",
    "ProtocolError",
    "Rendezvous",
    "int_value",
    "job_start",
    "new_generation",
]
