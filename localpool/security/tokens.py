"""IDTOKENS: ``condor_token_fetch``, ``condor_token_list``, and who a job's tool is.

The pool signs tokens as HTCondor does with its POOL signing key: a JWT,
HS256, header ``{"alg":"HS256","kid":"POOL"}``, claims ``sub`` (``user@host``),
``iss`` (the pool's trust domain, the host), ``iat``, ``jti``, and ``exp``
and ``scope`` (``condor:/READ condor:/WRITE``) when ``-lifetime`` and
``-authz`` ask for them. The key is ``passwords.d/POOL`` in the pool
directory (root-only).

On the access point a tool is known by the file system (SO_PEERCRED, as
HTCondor's FS method). A tool inside a job with a network of its own runs
as on an execute point that shares no file system with the access point:
FS cannot work there, so the tool must present a token from
``$_CONDOR_SEC_TOKEN_DIRECTORY``, else ``~/.condor/tokens.d``, or it fails
with HTCondor's authentication error; a token whose ``scope`` lacks the
command's level is denied. Outputs and messages: HTCondor's source
(``token_fetch.cpp``, ``token_list.cpp``, ``token_utils.cpp``) and manual.

``ticket``/``redeem``: the schedd's yes to ``condor_ssh_to_job``, which its
``-proxy`` must show before the job's sshd starts (``localpool.startd.sshd``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from localpool.schedd.store import Store
from localpool.security import privs
from localpool.security.privs import Account

NETNS_ENV = "_LOCALPOOL_NETNS"  # the caller's network namespace, set by the pool process
TOKEN_DIR_ENV = "_CONDOR_SEC_TOKEN_DIRECTORY"  # noqa: S105 (a variable's name)
KEY_NAME = "POOL"
# LOCAL_CONFIG_DIR_EXCLUDE_REGEXP's default: the files a token directory skips
EXCLUDE = re.compile(r"^((\..*)|(.*~)|(#.*)|(.*\.rpmsave)|(.*\.rpmnew))$")
READ_TOOLS = ("condor_q", "condor_history", "condor_status", "condor_token_list")
LEVELS = {"READ": {"READ"}, "WRITE": {"READ", "WRITE"}}  # WRITE implies READ
AUTH_FAILED = "AUTHENTICATE:1003:Failed to authenticate with any method"
TICKET_SECONDS = 120  # how long the schedd's answer to condor_ssh_to_job lets its proxy in
TICKET_PURPOSE = b"localpool condor_ssh_to_job session\0"  # never valid as a token


class AuthError(Exception):
    """The tool's request was not authenticated or not authorized: HTCondor's error line."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(obj: dict) -> str:
    """Compact, sorted, ``/`` escaped: as HTCondor's JSON library writes a JWT's parts."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).replace("/", "\\/")


def pool_key(store: Store) -> bytes:
    """The pool's signing key (made on first use; 0600 in a 0700 directory)."""
    folder = store.root / "passwords.d"
    path = folder / KEY_NAME
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    folder.mkdir(mode=0o700, exist_ok=True)
    tmp = folder / f".{KEY_NAME}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)  # the first writer wins; everybody reads its key
    tmp.unlink()
    return path.read_bytes()


def sign(store: Store, claims: dict) -> str:
    head = _b64(_json({"alg": "HS256", "kid": KEY_NAME}).encode())
    body = _b64(_json(claims).encode())
    mac = hmac.new(pool_key(store), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def verify(store: Store, token: str, now: float | None = None) -> dict | None:
    """The claims of a token this pool signed and that is still valid, else None."""
    try:
        head, body, mac = token.strip().split(".")
        header = json.loads(_unb64(head))
        claims = json.loads(_unb64(body))
        given = _unb64(mac)
    except (ValueError, TypeError):
        return None
    if header.get("alg") != "HS256" or header.get("kid") != KEY_NAME:
        return None
    want = hmac.new(pool_key(store), f"{head}.{body}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(want, given):
        return None
    if claims.get("iss") != store.config().host:
        return None
    exp = claims.get("exp")
    if exp is not None and (now or time.time()) >= exp:
        return None
    return claims


def token_dir(env: dict[str, str], account: Account) -> Path:
    """``SEC_TOKEN_DIRECTORY`` (from the environment), else ``~/.condor/tokens.d``."""
    given = env.get(TOKEN_DIR_ENV)
    return Path(given) if given else Path(account.home) / ".condor" / "tokens.d"


def _token_lines(folder: Path) -> list[tuple[Path, str]]:
    found = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        if EXCLUDE.match(path.name) or not path.is_file():
            continue
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append((path, line))
    return found


def peer_netns(conn: socket.socket) -> str:
    """The caller's network namespace as the pool sees it (SO_PEERCRED pid ->
    ``/proc/PID/ns/net``), never the client's word; "" when it cannot be read."""
    pid, _uid, _gid = struct.unpack(
        "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    )
    try:
        return os.readlink(f"/proc/{pid}/ns/net") if pid > 0 else ""
    except OSError:
        return ""


def isolated(env: dict[str, str]) -> bool:
    """Does the tool run in a network namespace other than the pool's (inside a job)?

    ``env[NETNS_ENV]`` is set by the pool process (:func:`peer_netns`); a caller
    whose namespace it could not read counts as isolated (it needs a token).
    """
    theirs = env.get(NETNS_ENV, "")
    try:
        ours = os.readlink("/proc/self/ns/net")
    except OSError:
        return False
    return theirs != ours


def authenticate(
    tool: str, store: Store, caller: Account, env: dict[str, str], level: str | None = None
) -> Account:
    """Who the request is from; raises :class:`AuthError` with HTCondor's error line.

    On the access point, the caller (FS). Inside an isolated job, the subject
    of the first valid token in the caller's token directory, limited to its scope:
    ``level`` (READ or WRITE), else the tool's own (READ for the tools that only look).
    """
    if not isolated(env):
        return caller
    with privs.as_user(caller):
        candidates = _token_lines(token_dir(env, caller))
    for _path, line in candidates:
        claims = verify(store, line)
        if claims is None:
            continue
        user = str(claims.get("sub", "")).split("@")[0]
        account = privs.account_named(user)
        if account is None:
            continue
        scope = claims.get("scope")
        if scope is not None:
            allowed: set[str] = set()
            for item in str(scope).split():
                granted = item.removeprefix("condor:/")
                allowed |= LEVELS.get(granted, {granted})
            need = level or ("READ" if tool in READ_TOOLS else "WRITE")
            if need not in allowed:
                raise AuthError(
                    f'SECMAN:2010:Received "DENIED" from server for user {claims["sub"]} '
                    "using method IDTOKENS."
                )
        return account
    raise AuthError(AUTH_FAILED)


def _ticket_mac(store: Store, body: str) -> bytes:
    return hmac.new(pool_key(store), TICKET_PURPOSE + body.encode(), hashlib.sha256).digest()


def ticket(
    store: Store, job: str, uid: int, account: str, netns: str, now: float | None = None
) -> str:
    """What the schedd's yes to ``condor_ssh_to_job`` stands for (HTCondor: the security
    session from the job's claim id, which the starter trusts): signed with the pool's key,
    for one job, the uid that asked from its network namespace (an isolated job of the same
    user shares /tmp, where the ticket lies, but not the namespace) and the account the
    schedd let in, for TICKET_SECONDS."""
    claims = {
        "job": job,
        "uid": uid,
        "netns": netns,
        "account": account,
        "exp": (time.time() if now is None else now) + TICKET_SECONDS,
        "nonce": secrets.token_hex(8),
    }
    body = _b64(_json(claims).encode())
    return f"{body}.{_b64(_ticket_mac(store, body))}"


def redeem(
    store: Store, text: str, job: str, uid: int, netns: str, now: float | None = None
) -> str | None:
    """The account a ticket of this pool lets ``uid`` (in ``netns``) into ``job`` as; None
    if it does not."""
    try:
        body, mac = text.strip().split(".")
        given = _unb64(mac)
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict) or not hmac.compare_digest(_ticket_mac(store, body), given):
        return None
    if claims.get("job") != job or claims.get("uid") != uid or claims.get("netns") != netns:
        return None
    if (time.time() if now is None else now) >= float(claims.get("exp", 0)):
        return None
    return str(claims.get("account") or "") or None


# --- the tools -------------------------------------------------------------------


def _fetch_usage(prog: str) -> str:
    return (
        f"Usage: {prog} [-type TYPE] [-name NAME] [-remote] [-pool POOL] [-authz AUTHZ] "
        "[-lifetime VAL] [-token NAME]\n\n"
        "Generates a token from a remote daemon and prints its contents to stdout.\n"
    )


def condor_token_fetch(
    argv: Sequence[str], store: Store, caller: Account, env: dict[str, str]
) -> int:
    """A token for the caller's own identity, limited by ``-authz`` and ``-lifetime``."""
    prog = "condor_token_fetch"
    authz: list[str] = []
    lifetime = -1
    name = None
    i = 0
    while i < len(argv):
        arg, value = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        low = arg.lower()
        if low in ("-authz", "-a", "-au", "-aut", "-auth"):
            if value is None:
                sys.stderr.write(f"{prog}: -authz requires an authorization name argument\n")
                return 1
            authz.append(value)
        elif low.startswith("-l") and "-lifetime".startswith(low):
            if value is None:
                sys.stderr.write(f"{prog}: -lifetime requires an integer in seconds.\n")
                return 1
            try:
                lifetime = int(value)
            except ValueError:
                sys.stderr.write(f"{prog}: Invalid argument for -lifetime: {value}.\n")
                return 1
        elif low in ("-token", "-to", "-tok", "-toke"):
            if value is None:
                sys.stderr.write(f"{prog}: -token requires a file name argument.\n")
                return 1
            name = value
        elif low in ("-type", "-ty", "-typ", "-pool", "-p", "-po", "-poo"):
            if value is None:
                sys.stderr.write(f"{prog}: {arg} requires an argument.\n")
                return 1
        elif low == "-debug":
            i += 1
            continue
        else:
            sys.stderr.write(f"{prog}: Invalid command line argument: {arg}\n")
            sys.stderr.write(_fetch_usage(prog))
            return 1
        i += 2
    now = int(time.time())
    claims: dict = {
        "iat": now,
        "iss": store.config().host,
        "jti": secrets.token_hex(16),
        "sub": f"{caller.name}@{store.config().host}",
    }
    if lifetime >= 0:
        claims["exp"] = now + lifetime
    if authz:
        claims["scope"] = " ".join(f"condor:/{a}" for a in authz)
    token = sign(store, claims)
    if name is None:
        sys.stdout.write(f"{token}\n")
        return 0
    folder = token_dir(env, caller)
    path = folder / name
    try:
        with privs.as_user(caller):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
            with open(fd, "a") as f:
                f.write(f"{token}\n")
    except OSError as err:
        sys.stderr.write(f"Cannot write token to {path}: {err.strerror} (errno={err.errno})\n")
        return 1
    return 0


def condor_token_list(argv: Sequence[str], caller: Account, env: dict[str, str]) -> int:
    """Every token in the caller's token directory: header, payload, file (one line each)."""
    prog = "condor_token_list"
    folder = token_dir(env, caller)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-dir" and i + 1 < len(argv):
            folder = Path(argv[i + 1])
            i += 2
            continue
        if arg == "-debug":
            i += 1
            continue
        sys.stderr.write(f"{prog}: Invalid command line argument: {arg}\n")
        sys.stderr.write(f"Usage: {prog}\n\nLists all the tokens available to the current user.\n")
        return 1
    with privs.as_user(caller):
        lines = _token_lines(folder)
    for path, line in lines:
        try:
            head, body, _mac = line.split(".")
            header = json.loads(_unb64(head))
            payload = json.loads(_unb64(body))
        except (ValueError, TypeError):
            continue  # "Failed to decode JWT in keyfile; ignoring." goes to the debug log
        sys.stdout.write(f"Header: {_json(header)} Payload: {_json(payload)} File: {path}\n")
    return 0
