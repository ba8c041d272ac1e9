"""What a user may ask a job for, each option defined once.

The notebook form (:mod:`~condorspawner.form`), ``condorsub``'s flags, the
workflow file's keys (:mod:`~condorspawner.workflow`), the site's limits
(:mod:`~condorspawner.site`), the checked request
(:class:`~condorspawner.request.JobRequest`) and its plain submit commands
are all read from :data:`OPTIONS` when they are used: adding an option (say,
GPU memory) is one :class:`JobOption` here, plus a template line only when it
needs more than ``command = value``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# what a value is, which decides how it is parsed and shown
COUNT, SIZE, DURATION = "count", "size", "duration"  # checked against the site's limits
CONTAINER, ENVIRONMENT, EXPRESSION, TEXT = "container", "environment", "expression", "text"
LIMITED = (COUNT, SIZE, DURATION)
UNITS = {COUNT: "", SIZE: "MB", DURATION: "s"}  # the base unit a limited value is kept in


@dataclass(frozen=True)
class JobOption:
    """One thing a user may ask for, and every place it appears."""

    name: str  # the user_options key, the form field, the site's [limits.<name>]
    kind: str  # COUNT, SIZE (MB), DURATION (s), CONTAINER, ENVIRONMENT, EXPRESSION, TEXT
    attr: str  # JobRequest's attribute, in the base unit ("memory_mb")
    label: str  # the form's label
    help: str  # the form's help text ({grace}: the notebook's grace period)
    flag: str  # condorsub's flag
    metavar: str
    flag_help: str | None = None
    short: str | None = None  # condorsub's short flag ("-e")
    toml: str | None = None  # the workflow file's key; None: not one (the job's own)
    form: str | None = None  # "main", "more" (folded), None: not on the form
    limit: tuple[Any, Any, Any] | None = None  # LIMITED: the built-in default, min, max
    submit: str | None = None  # LIMITED: the submit command its value goes to, if plain
    scale: int = 1  # the submit command's unit, in base units (request_disk: KB)
    omit_zero: bool = False  # no submit command for 0 (no GPUs asked)

    @property
    def limited(self) -> bool:
        return self.kind in LIMITED


OPTIONS: tuple[JobOption, ...] = (
    JobOption(
        "cpus",
        COUNT,
        "cpus",
        "CPUs",
        "CPU cores reserved for your server, its kernels and its terminals.",
        "--cpus",
        "N",
        toml="cpus",
        form="main",
        limit=(1, 1, 8),
        submit="request_cpus",
    ),
    JobOption(
        "memory",
        SIZE,
        "memory_mb",
        "Memory",
        "The most memory your server and everything it runs may use together. "
        "Write it like 4GB, 512MB or 1.5G.",
        "--memory",
        "SIZE",
        "e.g. 4GB, 512MB, 4096 (MB)",
        toml="memory",
        form="main",
        limit=("2GB", "128MB", "16GB"),
        submit="request_memory",
    ),
    JobOption(
        "disk",
        SIZE,
        "disk_mb",
        "Disk",
        "Scratch space in the job, besides your work directory. Write it like 10GB.",
        "--disk",
        "SIZE",
        toml="disk",
        form="more",
        limit=("10GB", "100MB", "100GB"),
        submit="request_disk",
        scale=1024,
    ),
    JobOption(
        "gpus",
        COUNT,
        "gpus",
        "GPUs",
        "Whole GPUs for your server. Asking for any makes it wait for a machine with a free GPU.",
        "--gpus",
        "N",
        toml="gpus",
        form="main",
        limit=(0, 0, 0),
        submit="request_gpus",
        omit_zero=True,
    ),
    JobOption(
        "runtime",
        DURATION,
        "runtime_s",
        "Runtime",
        "How long your server may run. It stops {grace} before this limit, so "
        "that your work directory comes back. Write it like 90m, 8h or 1d.",
        "--runtime",
        "DURATION",
        "e.g. 90m, 2h, 1d, 3600 (s)",
        toml="runtime",
        form="main",
        limit=("8h", "5m", "2d"),
    ),
    JobOption(
        "container",
        CONTAINER,
        "container",
        "Container OS",
        "The operating system your server, kernels and terminals run in.",
        "--os",
        "NAME",
        "container OS (see: containers)",
        toml="os",
        form="main",
    ),
    JobOption(
        "environment",
        ENVIRONMENT,
        "environment",
        "Environment variables",
        "One NAME=VALUE per line, set for your server, its kernels and terminals "
        "(names starting _CONDOR_, JUPYTERHUB_, JPY_ or BEARER_TOKEN are reserved).",
        "--env",
        "NAME[=VALUE]",
        "environment variable (NAME alone takes it from here)",
        short="-e",
        form="more",
    ),
    JobOption(
        "requirements",
        EXPRESSION,
        "requirements",
        "Requirements",
        "A ClassAd expression the execute point must match.",
        "--requirements",
        "EXPR",
        "a ClassAd expression",
        toml="requirements",
    ),
    JobOption(
        "label",
        TEXT,
        "label",
        "Name",
        "A name for the job(s).",
        "--name",
        "LABEL",
        "a name for the job(s)",
    ),
)


def names() -> tuple[str, ...]:
    return tuple(o.name for o in OPTIONS)


def option(name: str) -> JobOption:
    """The option of this name (KeyError if there is none)."""
    for candidate in OPTIONS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def limited() -> tuple[JobOption, ...]:
    return tuple(o for o in OPTIONS if o.limited)


def on_form(place: str) -> tuple[JobOption, ...]:
    return tuple(o for o in OPTIONS if o.form == place)


def in_workflow() -> tuple[JobOption, ...]:
    return tuple(o for o in OPTIONS if o.toml)


def flag_of(field: str) -> str:
    """The condorsub flag for a request's field (``environment.X``: ``--env X``)."""
    name, _, part = field.partition(".")
    try:
        flag = option(name).flag
    except KeyError:
        return f"--{field}"
    return f"{flag} {part}" if part else flag
