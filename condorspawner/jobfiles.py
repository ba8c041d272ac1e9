"""A notebook job's files on the hub: where they go, what the job gets, written as the user.

Each server has a submit directory of its own (description, wrapper, logs,
the private file) and a work directory that travels into the job and back:
``<submit_root>/default`` and ``<work>`` for the default server,
``<submit_root>/named/<name>`` and ``<work>-<name>`` for a named one, so no
two servers share either. Everything is written through
:class:`~condorspawner.userfiles.UserFiles`, as the user.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from condorspawner.protocol import SECRET_FILE
from condorspawner.render import SUBMIT_FILE, WRAPPER, NotebookPayload, RenderedJob, Renderer
from condorspawner.request import JobRequest
from condorspawner.site import Site
from condorspawner.userfiles import UserFiles

_SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


class JobPathError(ValueError):
    """The server's directories cannot be named; the message says why."""


def _expand(template: str, user: str, home: str | None) -> Path:
    if ("{home}" in template or template.startswith("~")) and home is None:
        raise JobPathError(f"user {user} has no home directory on the hub")
    text = template.replace("{username}", user).replace("{home}", home or "")
    if text.startswith("~"):
        text = (home or "") + text[1:]
    path = Path(text)
    if not path.is_absolute() or ".." in path.parts:
        raise JobPathError(f"{text!r} is not an absolute path without '..'")
    return path


@dataclass(frozen=True)
class JobPaths:
    """One server's submit directory and work directory on the hub."""

    submit_dir: Path
    work_dir: Path

    @classmethod
    def for_server(
        cls, *, submit_root: str, work_directory: str, user: str, home: str | None, server: str
    ) -> JobPaths:
        root = _expand(submit_root, user, home)
        work = _expand(work_directory, user, home)
        if not server:
            return cls(root / "default", work)
        if not _SERVER_NAME_RE.match(server):
            raise JobPathError(
                f"the server name {server!r} is not a plain name (letters, digits, . _ -)"
            )
        return cls(root / "named" / server, work.with_name(f"{work.name}-{server}"))

    @property
    def submit_file(self) -> Path:
        return self.submit_dir / SUBMIT_FILE

    @property
    def wrapper(self) -> Path:
        return self.submit_dir / WRAPPER

    @property
    def secret(self) -> Path:
        return self.submit_dir / SECRET_FILE


def job_site_text(site: Site) -> str | None:
    """The site settings condorsub needs in the job, as TOML: never the hub's own
    (how it runs tools as users and where, notebook settings)."""
    source = Path(site.source)
    if not source.is_file():
        return None
    import tomllib

    data = tomllib.loads(source.read_text())
    data.pop("notebook", None)
    if isinstance(data.get("pool"), dict):
        for hub_only in ("run_as", "bin_dir"):  # the job finds its tools by _CONDOR_BIN
            data["pool"].pop(hub_only, None)
    return _toml(data)


def _value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, numbers, booleans: JSON's spelling is TOML's


def _toml(data: dict, prefix: str = "") -> str:
    """A small TOML writer for the site file's shapes: plain keys first, then tables."""
    plain = [f"{json.dumps(k)} = {_value(v)}\n" for k, v in data.items() if not _is_table(v)]
    tables = []
    for key, value in data.items():
        if _is_table(value):
            name = f"{prefix}{json.dumps(key)}"
            header = f"[{name}]\n" if any(not _is_table(v) for v in value.values()) else ""
            tables.append(header + _toml(value, f"{name}."))
    return "".join(plain) + "".join(tables)


def _is_table(value: object) -> bool:
    return isinstance(value, dict) and bool(value)


async def write_job_files(files: UserFiles, paths: JobPaths, job: RenderedJob, secret: str) -> None:
    """The directories (the submit directory private) and the job's files, as the user."""
    await files.prepare(
        dirs=[(str(paths.work_dir), None), (str(paths.submit_dir), 0o700)],
        files=[
            (str(paths.secret), secret, 0o600),
            (str(paths.wrapper), job.wrapper, 0o755),
            (str(paths.submit_file), job.submit, 0o644),
        ],
    )


def notebook_job(
    site: Site,
    request: JobRequest,
    paths: JobPaths,
    *,
    python: str,
    hub_id: str,
    user: str,
    server: str = "",
    spawn: str = "",
    launcher_args: Sequence[str] = (),
) -> RenderedJob:
    """The notebook job's description from notebook.sub: the spawner's and ``condorsub lab``'s
    alike (the launcher, its grace period, the private file and the work directory both ways).

    Raises :class:`~condorspawner.request.RequestError` for a request outside the limits.
    """
    launcher = [
        python,
        "-m",
        "condorspawner.launcher",
        "--grace",
        str(site.notebook.grace_period),
        "--root-dir",
        paths.work_dir.name,
        *launcher_args,
    ]
    payload = NotebookPayload(
        command=tuple(launcher),
        hub_id=hub_id,
        user=user,
        server=server,
        spawn=spawn,
        input_files=(str(paths.secret), paths.work_dir.name),
        output_files=(paths.work_dir.name,),
        initialdir=str(paths.work_dir.parent),
        log_dir=str(paths.submit_dir),
    )
    return Renderer(site).render(request, payload, wrapper=str(paths.wrapper))
