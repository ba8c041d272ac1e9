"""Rendering: one request, three kinds of job; every user value quoted and read back."""

from __future__ import annotations

import classad2
import htcondor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from condorspawner import quoting, render
from condorspawner.render import (
    BatchPayload,
    InteractivePayload,
    NotebookPayload,
    Renderer,
    RenderError,
    parse_submit,
)
from condorspawner.request import JobRequest, RequestError

PAYLOAD_MARK = "# --- payload:"


def payloads():
    return {
        "notebook": NotebookPayload(
            command=("/opt/venv/bin/python", "-m", "condorspawner.launcher"),
            hub_id="hub-1",
            user="alice",
            input_files=("jupyter",),
            output_files=("jupyter",),
        ),
        "batch": BatchPayload(command=("/bin/echo", "hello"), input_files=("in.txt",)),
        "interactive": InteractivePayload(),
    }


def payload_commands(text: str) -> set[str]:
    """Commands HTCondor reads after the payload marker (the part a kind may differ in)."""
    commands, _ = parse_submit(text.split(PAYLOAD_MARK, 1)[1].split("\n", 1)[1])
    return set(commands)


def test_three_kinds_differ_only_in_the_payload(renderer, site):
    request = JobRequest.build(
        site,
        cpus=2,
        memory="4GB",
        container="Debian12",
        runtime="2h",
        environment={"A": "x y"},
        label="analysis",
    )
    jobs = {kind: renderer.render(request, p) for kind, p in payloads().items()}
    common = {kind: job.submit.split(PAYLOAD_MARK)[0] for kind, job in jobs.items()}
    # the text before the payload is byte for byte the same apart from the kind's name
    assert len({c.replace(kind, "KIND") for kind, c in common.items()}) == 1
    for a in jobs:
        for b in jobs:
            differing = {
                k
                for k in jobs[a].commands.keys() | jobs[b].commands.keys()
                if jobs[a].commands.get(k) != jobs[b].commands.get(k)
            }
            assert differing <= payload_commands(jobs[a].submit) | payload_commands(jobs[b].submit)
    notebook = jobs["notebook"].commands
    assert notebook["request_cpus"] == "2" and notebook["request_memory"] == "4096"
    assert notebook["MY.ContainerOS"] == '"Debian12"'
    # the runtime limit as a periodic hold, which every HTCondor version honours
    assert notebook["MY.MaxRuntime"] == "7200"
    assert "MaxRuntime" in notebook["periodic_hold"]
    assert "allowed_execute_duration" not in notebook and "want_io_proxy" not in notebook
    assert notebook["when_to_transfer_output"] == "ON_EXIT_OR_EVICT"
    assert notebook["MY.SpoolOnEvict"] == "false"


def test_wrapper_is_shared_and_names_thread_variables(renderer, site):
    request = JobRequest.build(site)
    wrappers = {renderer.render(request, p).wrapper for p in payloads().values()}
    assert len(wrappers) == 1
    wrapper = wrappers.pop()
    for var in render.THREAD_VARIABLES:
        assert var in wrapper


def test_a_request_beyond_the_limits_is_refused_at_render_time(renderer, site):
    ok = JobRequest.build(site)
    too_big = JobRequest.of({**ok.values, "cpus": 64})  # built around the validation
    with pytest.raises(RequestError, match=r"cpus: 64 is above the site limit of 8"):
        renderer.render(too_big, payloads()["batch"])
    too_long = JobRequest.of({**ok.values, "runtime_s": 10 * 86400})
    with pytest.raises(RequestError, match=r"runtime: 864000 is above the site limit of 2d"):
        renderer.render(too_long, payloads()["batch"])


def test_image_mode_names_the_image(make_site):
    site = make_site("""
        [containers]
        mode = "image"
        [[containers.os]]
        name = "Rocky9"
        image = "/images/$rocky9.sif"
        default = true
    """)
    job = Renderer(site).render(JobRequest.build(site), payloads()["batch"])
    sub = htcondor2.Submit(job.submit)
    assert sub.expand("container_image") == "/images/$rocky9.sif"
    assert job.commands["MY.ContainerOS"] == '"Rocky9"'


def test_site_templates_come_first(make_site, tmp_path):
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "batch.sub").write_text(
        '{% extends "common.sub" %}{% block payload %}MY.SiteFlag = true\n'
        "arguments = {{ payload.command | arguments }}\nqueue\n{% endblock %}\n"
    )
    site = make_site(f'[jobs]\ntemplate_dir = "{tmp_path / "tpl"}"\naccounting_group = "cms.u"\n')
    job = Renderer(site).render(JobRequest.build(site), payloads()["batch"])
    assert job.commands["MY.SiteFlag"] == "true"
    assert job.commands["accounting_group"] == "cms.u"


def test_a_template_printing_an_unquoted_value_is_refused(site, tmp_path):
    (tmp_path / "batch.sub").write_text("MY.Label = {{ req.label }}\nqueue\n")
    request = JobRequest.build(site, label="x")
    with pytest.raises(RenderError, match="without a quoting filter"):
        Renderer(site, [tmp_path]).render(request, payloads()["batch"])


def test_a_value_escaping_its_quotes_is_caught(renderer, site, monkeypatch):
    # A filter with a bug (no escaping) lets a user name (which may hold any text, so
    # it is a ClassAd string) add commands; the skeleton comparison sees it.
    monkeypatch.setitem(render._REAL_FILTERS, "classad", lambda v: quoting.Quoted(f'"{v}"'))
    request = JobRequest.build(site)
    for user, message in [
        ('x"\nrequest_cpus = 64\nMY.Evil = "1', r"unexpected: \['MY.Evil'\]"),
        ('x"\nqueue 500\nMY.Y = "1', "does not intend"),
    ]:
        payload = NotebookPayload(command=("python3",), hub_id="h", user=user)
        with pytest.raises(RenderError, match=message):
            Renderer(site).render(request, payload)


def test_rendered_files_are_written(renderer, site, tmp_path):
    job = renderer.render(JobRequest.build(site), payloads()["batch"])
    submit = job.write(tmp_path / "job")
    assert submit.read_text() == job.submit
    wrapper = tmp_path / "job" / "wrapper.sh"
    assert wrapper.read_text().startswith("#!/bin/bash") and wrapper.stat().st_mode & 0o111


# --- every user-controlled field, arbitrary text ------------------------------

NASTY = [
    "\n",
    "\r",
    '"',
    "'",
    "''",
    '""',
    "$(HOME)",
    "$$(Memory)",
    "$(DOLLAR)",
    "$ENV(PATH)",
    "\\",
    "\\\n",
    "\x00",
    "\t",
    " ",
    ",",
    ";",
    "=",
    "queue",
    "#",
    "\u00e9",
    "\u20ac",
    "\U0001f600",
    "]",
    "[",
    "{",
    "}",
    "&&",
    "||",
    "`id`",
    "$(id)",
]

arbitrary_text = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=4)), max_size=12).map("".join),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(1000, 30000)),
)


def expand(text: str, command: str) -> str:
    return htcondor2.Submit(text).expand(command)


def read_back(field: str, value: str, text: str):
    """The value as HTCondor's parsers read it from the rendered description."""
    if field == "label":
        return classad2.ExprTree(expand(text, "MY.JobBatchName")).eval()
    if field == "user":
        return classad2.ExprTree(expand(text, "MY.CondorSpawnerUser")).eval()
    if field in ("env_value", "env_name"):
        env = quoting.parse_submit_environment(expand(text, "environment"))
        return env["V"] if field == "env_value" else next(iter(env))
    if field == "requirements":
        return str(classad2.ExprTree(expand(text, "requirements")))
    if field in ("executable", "argument"):
        words = quoting.parse_submit_arguments(expand(text, "arguments"))
        return words[0] if field == "executable" else words[1]
    if field == "input_file":
        return expand(text, "transfer_input_files")
    if field == "container":
        return classad2.ExprTree(expand(text, "MY.ContainerOS")).eval()
    return int(
        expand(
            text,
            {
                "cpus": "request_cpus",
                "memory": "request_memory",
                "runtime": "MY.MaxRuntime",
            }[field],
        )
    )


def build(site, field: str, value: str):
    """(request, payload, a function giving the expected read-back) with ``value`` in ``field``."""
    options, command, files = {}, ["/bin/echo", "x"], ["in.txt"]
    if field == "env_value":
        options["environment"] = {"V": value}
    elif field == "env_name":
        options["environment"] = {value: "v"}
    elif field == "executable":
        command[0] = value
    elif field == "argument":
        command[1] = value
    elif field == "input_file":
        files = [value]
    elif field != "user":
        options[field] = value
    request = JobRequest.from_options(site, options)
    if field == "user":
        payload = NotebookPayload(command=("python3",), hub_id="h", user=value)
    else:
        payload = BatchPayload(command=tuple(command), input_files=tuple(files))
    expected = {
        "requirements": lambda: str(classad2.ExprTree(value)),
        "container": lambda: request.container.name,
        "cpus": lambda: request.cpus,
        "memory": lambda: request.memory_mb,
        "runtime": lambda: request.runtime_s,
    }.get(field, lambda: value)
    return request, payload, expected


FIELDS = [
    "label",
    "env_value",
    "env_name",
    "requirements",
    "executable",
    "argument",
    "input_file",
    "container",
    "cpus",
    "memory",
    "runtime",
    "user",
]


@pytest.mark.parametrize("field", FIELDS)
def test_every_user_field_is_refused_or_read_back_exactly(site, field):
    renderer = Renderer(site)
    baseline = {}
    seen = {"refused": 0, "rendered": 0}

    @settings(
        max_examples=2000,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(arbitrary_text)
    def check(value):
        try:
            request, payload, expected = build(site, field, value)
            job = renderer.render(request, payload)
        except RequestError as err:
            assert err.field.split(".")[0] in {
                "environment",
                "label",
                "requirements",
                "container",
                "cpus",
                "memory",
                "runtime",
                "executable",
                "arguments",
                "input file",
                "user",
            }
            seen["refused"] += 1
            return
        seen["rendered"] += 1
        shape = (type(payload), value == "")
        baseline.setdefault(shape, set(job.commands))
        assert set(parse_submit(job.submit)[0]) == baseline[shape]
        if value == "" and field in ("label", "requirements"):
            assert not {"MY.JobBatchName", "requirements"} & set(job.commands)
            return
        assert read_back(field, value, job.submit) == expected()

    check()
    assert seen["rendered"] + seen["refused"] >= 2000
