"""The site file: one TOML file that the hub and the CLI read alike.

Path: ``$CONDORSPAWNER_SITE``, else ``/etc/condorspawner/site.toml``, else
the built-in defaults below. Every key is checked at load time; a wrong key,
type or impossible value is refused with the key's full name and what was
expected, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condorspawner import job_options
from condorspawner.quoting import QuotingError, check_env_name, submit_classad_expr, submit_path
from condorspawner.units import (
    UnitError,
    format_duration_s,
    format_size_mb,
    parse_duration_s,
    parse_size_mb,
)
from containers.catalogue import Catalogue, CatalogueError

SITE_ENV = "CONDORSPAWNER_SITE"
SYSTEM_SITE = Path("/etc/condorspawner/site.toml")


# a schedd's Name as it may go onto -name and into the spawner's state (no option, no space)
SCHEDD_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+:-]{0,254}")


class SiteError(ValueError):
    """The site file is wrong; the message names the key."""


@dataclass(frozen=True)
class Limit:
    """Allowed range and default for one resource, in its base unit."""

    name: str
    default: int
    min: int
    max: int
    unit: str = ""

    def describe(self, value: int) -> str:
        """A value of this resource written the way users write it."""
        fmt: Callable[[int], str] = {"MB": format_size_mb, "s": format_duration_s}.get(
            self.unit, str
        )
        return fmt(value)


@dataclass(frozen=True)
class Pool:
    """How to reach the schedd and run HTCondor tools on a user's behalf."""

    schedd: str = ""
    collector: str = ""
    # several access points: new jobs go to the least loaded (condorspawner.schedds)
    schedds: tuple[str, ...] = ()
    schedd_constraint: str = ""  # or every schedd the collector lists matching this
    run_as: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    bin_dir: str = ""  # where the condor_* tools are ("" = found on PATH)
    command_timeout: float = 60.0


@dataclass(frozen=True)
class Jobs:
    """What every job of this site gets, whatever the user asked."""

    accounting_group: str = ""
    requirements: str = ""
    template_dir: str = ""


@dataclass(frozen=True)
class Notebook:
    """Notebook-only settings."""

    work_directory: str = "~/jupyter"
    grace_period: int = 300
    start_timeout: int = 600
    hub_api: str = "tunnel"
    # fetch an IDTOKEN as the user for each notebook, so condorsub works in it on a real pool
    submit_token: bool = False
    # accept execute points that run jobs as another account than the Owner's (see
    # docs/admin.md): the server's isolation is then shared with other users' jobs
    shared_job_accounts: bool = False
    # how long a running job may be without a tunnel before it is ended (its port shows a
    # page meanwhile); the site file's default is the grace period
    reattach_timeout: int = 300
    # how many sessions re-attach at once per schedd (a hub restart: each attach is a
    # condor_ssh_to_job, a question to the schedd and an sshd in the job); the others'
    # pages say "being re-established" until their turn
    reattach_concurrency: int = 10


@dataclass(frozen=True)
class Site:
    """Everything the site file says, checked."""

    pool: Pool
    limits: Mapping[str, Limit]
    catalogue: Catalogue
    jobs: Jobs
    notebook: Notebook
    image_root: str = ""
    source: str = "built-in defaults"


# --- schema ------------------------------------------------------------------

_STR, _NUM, _INT, _BOOL = "a string", "a number", "an integer", "true or false"


def _check_type(key: str, value: Any, expected: str) -> Any:
    ok = {
        _STR: isinstance(value, str),
        _NUM: isinstance(value, int | float) and not isinstance(value, bool),
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _BOOL: isinstance(value, bool),
    }[expected]
    if not ok:
        raise SiteError(f"{key}: expected {expected}, got {value!r}")
    return value


def _table(key: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SiteError(f"{key}: expected a table, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        where = f"{key}." if key else ""
        raise SiteError(
            f"{where}{unknown[0]}: unknown key (allowed here: {', '.join(sorted(allowed))})"
        )
    return value


def _str_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SiteError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


_PARSERS: dict[str, Callable[[Any], int]] = {
    job_options.COUNT: int,
    job_options.SIZE: parse_size_mb,
    job_options.DURATION: parse_duration_s,
}


def _limit_defaults() -> dict[str, tuple[Callable[[Any], int], str, Any, Any, Any]]:
    """Each limited option: (parser to its base unit, unit, built-in default, min, max)."""
    return {
        o.name: (_PARSERS[o.kind], job_options.UNITS[o.kind], *o.limit)
        for o in job_options.limited()
    }


def _limit(name: str, raw: Any) -> Limit:
    parse, unit, d_default, d_min, d_max = _limit_defaults()[name]
    table = _table(f"limits.{name}", raw, {"default", "min", "max"})
    values = {}
    for part, fallback in (("default", d_default), ("min", d_min), ("max", d_max)):
        given = table.get(part, fallback)
        key = f"limits.{name}.{part}"
        if isinstance(given, bool) or not isinstance(given, int | str):
            raise SiteError(f"{key}: expected a number or a string like '4GB'/'2h', got {given!r}")
        if parse is int and not isinstance(given, int):
            raise SiteError(f"{key}: expected an integer, got {given!r}")
        try:
            values[part] = parse(given)
        except UnitError as err:
            raise SiteError(f"{key}: {given!r} {err}") from None
        if values[part] < 0:
            raise SiteError(f"{key}: must not be negative, got {given!r}")
    if values["min"] > values["max"]:
        raise SiteError(f"limits.{name}: min {values['min']} is above max {values['max']}")
    if not values["min"] <= values["default"] <= values["max"]:
        raise SiteError(
            f"limits.{name}.default: {values['default']} is outside min..max "
            f"({values['min']}..{values['max']})"
        )
    return Limit(name, values["default"], values["min"], values["max"], unit)


def _expression(key: str, raw: Any) -> str:
    """A ClassAd expression the submit file can carry ("" for none)."""
    text = _check_type(key, raw, _STR)
    if text:
        try:
            submit_classad_expr(text)
        except QuotingError as err:
            raise SiteError(f"{key}: {text!r} {err}") from None
    return text


def _pool(raw: Any) -> Pool:
    t = _table(
        "pool",
        raw,
        {
            "schedd",
            "schedds",
            "schedd_constraint",
            "collector",
            "run_as",
            "environment",
            "command_timeout",
            "bin_dir",
        },
    )
    schedds = _str_list("pool.schedds", t.get("schedds", []))
    constraint = _expression("pool.schedd_constraint", t.get("schedd_constraint", ""))
    if sum(bool(x) for x in (t.get("schedd"), schedds, constraint)) > 1:
        raise SiteError("pool: give one of schedd, schedds and schedd_constraint")
    schedd = _check_type("pool.schedd", t.get("schedd", ""), _STR)
    for key, names in (("pool.schedd", [schedd] if schedd else []), ("pool.schedds", schedds)):
        for name in names:
            if not SCHEDD_NAME_RE.fullmatch(name):
                raise SiteError(f"{key}: {name!r} is not a schedd name")
    bin_dir = _check_type("pool.bin_dir", t.get("bin_dir", ""), _STR)
    if bin_dir and not os.path.isabs(bin_dir):
        raise SiteError(f"pool.bin_dir: must be an absolute directory, got {bin_dir!r}")
    run_as = _str_list("pool.run_as", t.get("run_as", []))
    env = t.get("environment", {})
    if not isinstance(env, dict):
        raise SiteError(f"pool.environment: expected a table of strings, got {env!r}")
    for name, value in env.items():
        try:
            check_env_name(name)
        except QuotingError as err:
            raise SiteError(f"pool.environment: {name!r} {err}") from None
        _check_type(f"pool.environment.{name}", value, _STR)
    timeout = _check_type("pool.command_timeout", t.get("command_timeout", 60), _NUM)
    if timeout <= 0:
        raise SiteError(f"pool.command_timeout: must be above 0, got {timeout!r}")
    return Pool(
        schedd=schedd,
        collector=_check_type("pool.collector", t.get("collector", ""), _STR),
        schedds=schedds,
        schedd_constraint=constraint,
        run_as=run_as,
        environment=dict(env),
        command_timeout=float(timeout),
        bin_dir=bin_dir,
    )


def _jobs(raw: Any) -> Jobs:
    t = _table("jobs", raw, {"accounting_group", "requirements", "template_dir"})
    requirements = _expression("jobs.requirements", t.get("requirements", ""))
    template_dir = _check_type("jobs.template_dir", t.get("template_dir", ""), _STR)
    if template_dir and not Path(template_dir).is_dir():
        raise SiteError(f"jobs.template_dir: {template_dir!r} is not a directory")
    return Jobs(
        accounting_group=_check_type("jobs.accounting_group", t.get("accounting_group", ""), _STR),
        requirements=requirements,
        template_dir=template_dir,
    )


def _notebook(raw: Any) -> Notebook:
    t = _table(
        "notebook",
        raw,
        {
            "work_directory",
            "grace_period",
            "start_timeout",
            "hub_api",
            "submit_token",
            "shared_job_accounts",
            "reattach_timeout",
            "reattach_concurrency",
        },
    )
    durations = {}
    grace = t.get("grace_period", "5m")
    for key, default in (
        ("grace_period", "5m"),
        ("start_timeout", "10m"),
        ("reattach_timeout", grace),
    ):
        try:
            durations[key] = parse_duration_s(t.get(key, default))
        except UnitError as err:
            raise SiteError(f"notebook.{key}: {t.get(key)!r} {err}") from None
    hub_api = _check_type("notebook.hub_api", t.get("hub_api", "tunnel"), _STR)
    if hub_api not in ("tunnel", "direct"):
        raise SiteError(f"notebook.hub_api: expected 'tunnel' or 'direct', got {hub_api!r}")
    return Notebook(
        work_directory=_check_type(
            "notebook.work_directory", t.get("work_directory", "~/jupyter"), _STR
        ),
        hub_api=hub_api,
        submit_token=_check_type("notebook.submit_token", t.get("submit_token", False), _BOOL),
        shared_job_accounts=_check_type(
            "notebook.shared_job_accounts", t.get("shared_job_accounts", False), _BOOL
        ),
        reattach_concurrency=_positive("notebook.reattach_concurrency", t, 10),
        **durations,
    )


def _positive(key: str, table: dict[str, Any], default: int) -> int:
    value = _check_type(key, table.get(key.rsplit(".", 1)[1], default), _INT)
    if value < 1:
        raise SiteError(f"{key}: expected at least 1, got {value}")
    return value


_BUILTIN_CATALOGUE = {
    "mode": "site",
    "os": [
        {
            "name": "Rocky9",
            "label": "Rocky Linux 9",
            "image": "/containers/rocky9.sif",
            "default": True,
        },
        {"name": "Debian12", "label": "Debian 12", "image": "/containers/debian12.sif"},
    ],
}


def _catalogue(raw: Any) -> tuple[Catalogue, str]:
    t = _table("containers", raw, {"mode", "os", "extra_binds", "image_root"})
    _check_type("containers.mode", t.get("mode", "site"), _STR)
    _str_list("containers.extra_binds", t.get("extra_binds", []))
    image_root = _check_type("containers.image_root", t.get("image_root", ""), _STR)
    entries = t.get("os")
    if entries is None:
        raise SiteError("containers.os: no container OS listed; add at least one [[containers.os]]")
    if not isinstance(entries, list):
        raise SiteError(f"containers.os: expected a list of tables, got {entries!r}")
    for i, entry in enumerate(entries):
        key = f"containers.os[{i}]"
        _table(key, entry, {"name", "label", "image", "default", "description"})
        for part in ("name", "image"):
            if part not in entry:
                raise SiteError(f"{key}.{part}: missing")
            _check_type(f"{key}.{part}", entry[part], _STR)
        _check_type(f"{key}.label", entry.get("label", ""), _STR)
        _check_type(f"{key}.description", entry.get("description", ""), _STR)
        _check_type(f"{key}.default", entry.get("default", False), _BOOL)
        try:
            submit_path(entry["image"])
        except QuotingError as err:
            raise SiteError(f"{key}.image: {entry['image']!r} {err}") from None
    try:
        return Catalogue.from_config(t), image_root
    except CatalogueError as err:
        raise SiteError(str(err)) from None


def parse_site(data: Mapping[str, Any], source: str = "built-in defaults") -> Site:
    """Check a site file's parsed TOML and build the :class:`Site`."""
    top = _table("", dict(data), {"pool", "limits", "containers", "jobs", "notebook"})
    limited = _limit_defaults()
    limits_raw = _table("limits", top.get("limits", {}), set(limited))
    catalogue, image_root = _catalogue(top.get("containers", _BUILTIN_CATALOGUE))
    return Site(
        pool=_pool(top.get("pool", {})),
        limits={name: _limit(name, limits_raw.get(name, {})) for name in limited},
        catalogue=catalogue,
        jobs=_jobs(top.get("jobs", {})),
        notebook=_notebook(top.get("notebook", {})),
        image_root=image_root,
        source=source,
    )


def load_site(path: str | os.PathLike[str] | None = None) -> Site:
    """The site from ``path``, ``$CONDORSPAWNER_SITE``, the system file, or the built-ins."""
    if path is None:
        env_path = os.environ.get(SITE_ENV)
        if env_path:
            path = env_path
        elif SYSTEM_SITE.exists():
            path = SYSTEM_SITE
        else:
            return parse_site({})
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SiteError(f"site file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise SiteError(f"site file {path}: not valid TOML ({err})") from None
    try:
        return parse_site(data, source=str(path))
    except SiteError as err:
        raise SiteError(f"site file {path}: {err}") from None


_CACHE: dict[tuple[str | None, float | None], Site] = {}


def cached_site(path: str | os.PathLike[str] | None = None) -> Site:
    """``load_site`` once per file and modification time (one hub, many spawners)."""
    resolved = None if path is None else str(path)
    try:
        mtime = os.stat(resolved).st_mtime if resolved else None
    except OSError:
        mtime = None
    key = (resolved, mtime)
    if key not in _CACHE:
        _CACHE[key] = load_site(path)
    return _CACHE[key]
