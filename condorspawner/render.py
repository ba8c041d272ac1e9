"""Rendering job templates into submit descriptions HTCondor will read as intended.

Three guards stand between a user's text and the schedd:

1. the only way a template prints a value is through a quoting filter or as
   a validated number (Jinja's ``finalize`` refuses anything else);
2. the template is rendered a second time with every quoted value replaced
   by a harmless placeholder: that "skeleton" has exactly the commands the
   template intends for this request's shape;
3. both texts are parsed with ``htcondor2.Submit``; if their commands or
   queue statements differ, a value broke out of its quoting, and rendering
   fails instead of submitting.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from condorspawner import quoting
from condorspawner.jobad import MARKS
from condorspawner.quoting import Quoted, QuotingError
from condorspawner.request import JobRequest, RequestError
from condorspawner.site import Site

TEMPLATE_DIR = Path(__file__).parent / "templates"
KINDS = ("notebook", "batch", "interactive")
WRAPPER = "wrapper.sh"
SUBMIT_FILE = "job.sub"

# Set by HTCondor from the CPUs a job got; the wrapper re-sets them after the
# login profiles from the job's RequestCpus.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "JULIA_NUM_THREADS",
    "CUBACORES",
)

# HTCondor's own interactive job: keep the slot while a shell is connected.
INTERACTIVE_HOLD = (
    "/bin/sh",
    "-c",
    "sleep 180 && while test -d ${_CONDOR_SCRATCH_DIR}/.condor_ssh_to_job_1; do /bin/sleep 3; done",
)
_IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*\Z")


class RenderError(RuntimeError):
    """A template or a value produced a description HTCondor would read otherwise."""


def _check(field_name: str, check: Callable[[Any], Any], value: Any) -> None:
    try:
        check(value)
    except QuotingError as err:
        raise RequestError(field_name, value, str(err)) from None


@dataclass(frozen=True)
class BatchPayload:
    """A batch job's command, the files it takes along, and how many copies."""

    command: tuple[str, ...]
    input_files: tuple[str, ...] = ()
    count: int = 1

    def __post_init__(self) -> None:
        if not self.command:
            raise RequestError("executable", "", "is missing")
        _check("executable", quoting.submit_path, self.command[0])
        _check("arguments", quoting.submit_arguments, self.command[1:])
        for path in self.input_files:
            _check("input file", lambda p: quoting.submit_path(p, in_list=True), path)
        if (
            isinstance(self.count, bool)
            or not isinstance(self.count, int)
            or not (1 <= self.count <= 100000)
        ):
            raise RequestError("count", self.count, "is not a whole number from 1 to 100000")


@dataclass(frozen=True)
class NotebookPayload:
    """The launcher command and the files a notebook job carries both ways."""

    command: tuple[str, ...]
    hub_id: str
    user: str
    server: str = ""  # the named server's name ("" for the default server)
    spawn: str = ""  # this spawn's public id: finds a job whose id was lost
    input_files: tuple[str, ...] = ()
    output_files: tuple[str, ...] = ()
    initialdir: str = "."
    log_dir: str = "."

    def __post_init__(self) -> None:
        _check("launcher", quoting.submit_arguments, self.command)
        _check("initialdir", quoting.submit_path, self.initialdir)
        _check("log directory", quoting.submit_path, self.log_dir)
        _check("hub id", quoting.submit_classad_string, self.hub_id)
        _check("user", quoting.submit_classad_string, self.user)
        _check("server name", quoting.submit_classad_string, self.server)
        _check("spawn id", quoting.submit_classad_string, self.spawn)
        for path in (*self.input_files, *self.output_files):
            _check("transferred file", lambda p: quoting.submit_path(p, in_list=True), path)


@dataclass(frozen=True)
class InteractivePayload:
    """What holds an interactive slot until the shell has come and gone."""

    command: tuple[str, ...] = INTERACTIVE_HOLD


Payload = BatchPayload | NotebookPayload | InteractivePayload
_PAYLOAD_KIND = {
    BatchPayload: "batch",
    NotebookPayload: "notebook",
    InteractivePayload: "interactive",
}


@dataclass(frozen=True)
class RenderedJob:
    """A submit description and its wrapper, both checked, ready to write and submit."""

    kind: str
    submit: str
    wrapper: str
    commands: Mapping[str, str] = field(default_factory=dict)
    queue: str = ""

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``job.sub`` and an executable ``wrapper.sh``; returns the submit file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        wrapper = directory / WRAPPER
        wrapper.write_text(self.wrapper)
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        submit = directory / SUBMIT_FILE
        submit.write_text(self.submit)
        return submit


def _finalize(value: Any) -> Any:
    if isinstance(value, Quoted) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise RenderError(
        f"template printed {value!r} without a quoting filter "
        "(use classad, expr, path, path_list, arguments, environment, identifier or sh)"
    )


def _identifier(value: str) -> Quoted:
    if not isinstance(value, str) or not _IDENTIFIER_RE.match(value):
        raise QuotingError("is not a plain name (letters, digits, '_', '.', '@', '-')")
    return Quoted(value)


def _shell_words(value: str | Iterable[str]) -> Quoted:
    words = [value] if isinstance(value, str) else list(value)
    return Quoted(" ".join(shlex.quote(w) for w in words))


_REAL_FILTERS: dict[str, Callable[..., Quoted]] = {
    "classad": quoting.submit_classad_string,
    "expr": quoting.submit_classad_expr,
    "path": quoting.submit_path,
    "path_list": quoting.submit_path_list,
    "arguments": quoting.submit_arguments,
    "environment": lambda env: quoting.submit_environment(dict(env)),
    "identifier": _identifier,
    "sh": _shell_words,
}
# Same shape, no user text: what the template intends for this request.
_SKELETON_FILTERS: dict[str, Callable[..., Quoted]] = {
    "classad": lambda _v: Quoted('"x"'),
    "expr": lambda _v: Quoted("true"),
    "path": lambda _v: Quoted("x"),
    "path_list": lambda _v: Quoted("x"),
    "arguments": lambda _v: Quoted('"x"'),
    "environment": lambda _v: Quoted('"X=x"'),
    "identifier": lambda _v: Quoted("x"),
    "sh": lambda _v: Quoted("x"),
}


def parse_submit(text: str) -> tuple[dict[str, str], str]:
    """Commands and queue arguments of a description, as HTCondor's own parser reads them."""
    import htcondor2  # the bindings load a C++ library: only when a description is checked

    try:
        sub = htcondor2.Submit(text)
    except Exception as err:  # the bindings raise their own types
        raise RenderError(f"HTCondor cannot parse the description: {err}") from None
    return {k: sub[k] for k in sub.keys()}, sub.getQArgs()  # noqa: SIM118


class Renderer:
    """Renders the job templates of one site; a site's own template directory comes first."""

    def __init__(
        self, site: Site, template_dirs: Sequence[str | os.PathLike[str]] | None = None
    ) -> None:
        self.site = site
        if template_dirs is None:
            template_dirs = [site.jobs.template_dir] if site.jobs.template_dir else []
        loader = jinja2.FileSystemLoader([*map(str, template_dirs), str(TEMPLATE_DIR)])
        self._envs = {}
        for mode, filters in (("real", _REAL_FILTERS), ("skeleton", _SKELETON_FILTERS)):
            # Not HTML: the quoting filters and _finalize do the escaping.
            env = jinja2.Environment(  # noqa: S701
                loader=loader,
                undefined=jinja2.StrictUndefined,
                finalize=_finalize,
                keep_trailing_newline=True,
            )
            env.filters.update(filters)
            # the job-ad marks' names (condorspawner.jobad): the template's own commands,
            # the same in both modes
            env.globals["attr"] = {key: Quoted(name) for key, name in MARKS.items()}
            self._envs[mode] = env

    def _requirements(self, request: JobRequest) -> str:
        """Site and user requirements, both to hold."""
        parts = [p for p in (self.site.jobs.requirements, request.requirements) if p]
        return parts[0] if len(parts) == 1 else " && ".join(f"({p})" for p in parts)

    def _render(self, mode: str, template: str, context: Mapping[str, Any]) -> str:
        try:
            return self._envs[mode].get_template(template).render(context)
        except QuotingError as err:
            raise RenderError(f"{template}: a value {err}") from None
        except jinja2.TemplateError as err:
            raise RenderError(f"{template}: {err}") from None

    def wrapper(self) -> str:
        """The in-job wrapper script (the same for every kind of job)."""
        return self._render(
            "real", WRAPPER, {"site": self.site, "thread_variables": THREAD_VARIABLES}
        )

    def render(self, request: JobRequest, payload: Payload, wrapper: str = WRAPPER) -> RenderedJob:
        """Render and check the description for this request and payload.

        ``wrapper`` is where the wrapper script will be (relative to the
        directory condor_submit runs in, or absolute).
        """
        # A request built around JobRequest.build still meets this site's limits.
        JobRequest.from_options(self.site, request.as_options())
        kind = _PAYLOAD_KIND[type(payload)]
        context = {
            "kind": Quoted(kind),
            "req": request,
            # the job options' own commands (job_options, not a user's): alike in both modes
            "resources": [(Quoted(c), value) for c, value in request.submit_commands()],
            "site": self.site,
            "payload": payload,
            "requirements": self._requirements(request),
            "wrapper": wrapper,
        }
        text = self._render("real", f"{kind}.sub", context)
        skeleton = self._render("skeleton", f"{kind}.sub", context)
        commands, queue = parse_submit(text)
        intended, intended_queue = parse_submit(skeleton)
        if set(commands) != set(intended) or queue != intended_queue:
            extra = sorted(set(commands) - set(intended))
            missing = sorted(set(intended) - set(commands))
            raise RenderError(
                f"{kind}.sub rendered commands the template does not intend "
                f"(unexpected: {extra or 'none'}; missing: {missing or 'none'}; "
                f"queue {queue!r} vs {intended_queue!r})"
            )
        return RenderedJob(kind, text, self.wrapper(), commands, queue)
