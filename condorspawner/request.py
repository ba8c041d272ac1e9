"""JobRequest: what a user asked for, checked against the site's limits.

The notebook form, the REST API's ``user_options`` and ``condorsub``'s flags
all end here, so a notebook and a batch job asking for the same things get
the same resources, container and environment, and the same error messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from condorspawner import job_options
from condorspawner.job_options import JobOption
from condorspawner.quoting import QuotingError, check_env_name, check_text, submit_classad_expr
from condorspawner.site import Limit, Site
from condorspawner.units import (
    UnitError,
    format_duration_s,
    format_size_mb,
    parse_duration_s,
    parse_size_mb,
)
from containers.catalogue import CatalogueError, ContainerOS

# HTCondor's and JupyterHub's own, some of them secrets (JPY_API_TOKEN, BEARER_TOKEN*):
# a job's environment is in its ad, which every user of the pool may read
RESERVED_ENV_PREFIXES = ("_CONDOR_", "JUPYTERHUB_", "JPY_", "BEARER_TOKEN")
MAX_LABEL = 200
MAX_ENV_VALUE = 65536


class RequestError(ValueError):
    """One field of a request is not acceptable; the message names field, value and rule."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        shown = (
            value
            if isinstance(value, int | float) and not isinstance(value, bool)
            else repr(
                value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
            )
        )
        super().__init__(f"{field}: {shown} {reason}")
        self.field = field
        self.value = value
        self.reason = reason


def _whole_number(field: str, value: Any) -> int:
    if isinstance(value, bool):
        raise RequestError(field, value, "is not a whole number")
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.isdigit() and text.isascii() and len(text) <= 18:
        return int(text)
    raise RequestError(field, value, "is not a whole number")


def _within(limit: Limit, value: int, raw: Any) -> int:
    allowed = f"(allowed {limit.describe(limit.min)} to {limit.describe(limit.max)})"
    if value > limit.max:
        raise RequestError(
            limit.name, raw, f"is above the site limit of {limit.describe(limit.max)} {allowed}"
        )
    if value < limit.min:
        raise RequestError(
            limit.name, raw, f"is below the site minimum of {limit.describe(limit.min)} {allowed}"
        )
    return value


_UNIT_PARSERS = {job_options.SIZE: parse_size_mb, job_options.DURATION: parse_duration_s}


def _resource(site: Site, option: JobOption, raw: Any) -> int:
    name = option.name
    limit = site.limits[name]
    if raw is None or raw == "":
        return limit.default
    parser = _UNIT_PARSERS.get(option.kind)
    if parser is None:
        value = _whole_number(name, raw)
    else:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise RequestError(name, raw, "is not a size or duration")
        try:
            value = parser(raw)
        except UnitError as err:
            raise RequestError(name, raw, str(err)) from None
    return _within(limit, value, raw)


def _environment(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None or raw == "":
        return ()
    if isinstance(raw, Mapping):
        pairs: Iterable[tuple[Any, Any]] = raw.items()
    elif isinstance(raw, list | tuple | str):
        lines = raw.splitlines() if isinstance(raw, str) else raw
        pairs = []
        for entry in lines:
            if not isinstance(entry, str):
                raise RequestError("environment", entry, "is not NAME=VALUE text")
            if not entry.strip():
                continue
            name, sep, value = entry.partition("=")
            if not sep:
                raise RequestError("environment", entry, "is not NAME=VALUE")
            pairs.append((name.strip(), value))
    else:
        raise RequestError("environment", raw, "is not a table or a list of NAME=VALUE")
    env: dict[str, str] = {}
    for name, value in pairs:
        try:
            check_env_name(name)
        except QuotingError as err:
            raise RequestError("environment", name, str(err)) from None
        if name.upper().startswith(RESERVED_ENV_PREFIXES):
            prefixes = " or ".join(RESERVED_ENV_PREFIXES)
            raise RequestError("environment", name, f"is reserved (names starting {prefixes})")
        if not isinstance(value, str):
            raise RequestError(f"environment.{name}", value, "is not text")
        if len(value) > MAX_ENV_VALUE:
            raise RequestError(f"environment.{name}", value, f"is longer than {MAX_ENV_VALUE}")
        try:
            check_text(value)
        except QuotingError as err:
            raise RequestError(f"environment.{name}", value, str(err)) from None
        env[name] = value
    return tuple(env.items())


def _expression(name: str, raw: Any) -> str:
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        raise RequestError(name, raw, "is not a ClassAd expression")
    try:
        submit_classad_expr(raw)
    except QuotingError as err:
        raise RequestError(name, raw, str(err)) from None
    return raw


def _text(name: str, raw: Any) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise RequestError(name, raw, "is not text")
    if len(raw) > MAX_LABEL:
        raise RequestError(name, raw, f"is longer than {MAX_LABEL} characters")
    try:
        check_text(raw)
    except QuotingError as err:
        raise RequestError(name, raw, str(err)) from None
    return raw


def _container(site: Site, raw: Any) -> ContainerOS:
    try:
        return site.catalogue.choose(raw)
    except CatalogueError as err:
        raise RequestError("container", raw, str(err)) from None


def _check(site: Site, option: JobOption, raw: Any) -> Any:
    """One option's value, checked, in its base unit (None: the default)."""
    if option.limited:
        return _resource(site, option, raw)
    if option.kind == job_options.CONTAINER:
        return _container(site, raw)
    if option.kind == job_options.ENVIRONMENT:
        return _environment(raw)
    if option.kind == job_options.EXPRESSION:
        return _expression(option.name, raw)
    return _text(option.name, raw)


@dataclass(frozen=True)
class JobRequest:
    """A validated request: each option's value (``values``, by the option's ``attr``) in
    its base unit (MB, s), the catalogue entry, checked texts; read as attributes
    (``request.memory_mb``)."""

    items: tuple[tuple[str, Any], ...]  # (attribute, value) pairs: a request is hashable

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> JobRequest:
        return cls(tuple(values.items()))

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.items)

    def __getattr__(self, attr: str) -> Any:
        for name, value in self.__dict__.get("items", ()):
            if name == attr:
                return value
        raise AttributeError(attr)

    @classmethod
    def build(cls, site: Site, **options: Any) -> JobRequest:
        """Check each option (strings as users type them, or numbers); None: the default."""
        unknown = sorted(set(options) - set(job_options.names()))
        if unknown:
            raise TypeError(f"not an option: {unknown[0]}")
        return cls.of({o.attr: _check(site, o, options.get(o.name)) for o in job_options.OPTIONS})

    @classmethod
    def from_options(cls, site: Site, options: Mapping[str, Any]) -> JobRequest:
        """From ``user_options`` (REST API or parsed form): unknown keys are refused."""
        if not isinstance(options, Mapping):
            raise RequestError("options", options, "is not a table of options")
        known = job_options.names()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise RequestError(
                unknown[0], options[unknown[0]], f"is not an option (known: {', '.join(known)})"
            )
        return cls.build(site, **options)

    @classmethod
    def from_form(cls, site: Site, formdata: Mapping[str, Any]) -> JobRequest:
        """From a web form's fields (lists of strings, as JupyterHub passes them)."""
        options = {}
        for name, value in formdata.items():
            if isinstance(value, list):
                value = value[0] if value else ""
            options[name] = value
        return cls.from_options(site, options)

    def summary(self) -> str:
        """What the job asks for, as a user reads it: "2 CPUs, 4 GB, Rocky Linux 9, 8h"."""
        parts = [
            f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}",
            format_size_mb(self.memory_mb),
        ]
        if self.gpus:
            parts.append(f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}")
        parts += [self.container.label, f"up to {format_duration_s(self.runtime_s)}"]
        return ", ".join(parts)

    def as_options(self) -> dict[str, Any]:
        """The request as ``user_options`` again (for state and display)."""
        shown = {job_options.CONTAINER: lambda v: v.name, job_options.ENVIRONMENT: dict}
        return {
            o.name: shown.get(o.kind, lambda v: v)(self.values[o.attr]) for o in job_options.OPTIONS
        }

    def submit_commands(self) -> list[tuple[str, int]]:
        """The plain ``command = value`` lines of the limited options (request_cpus, ...)."""
        commands = []
        for o in job_options.limited():
            value = self.values[o.attr]
            if o.submit and not (o.omit_zero and value == 0):
                commands.append((o.submit, value * o.scale))
        return commands
