"""A job option is defined once: a new one appears in the form, the CLI, the workflow file,
the site's limits, the request and the submit description from its one definition."""

from __future__ import annotations

import re

import pytest

from condorspawner import cli, form, job_options, workflow
from condorspawner.cli.context import job_request
from condorspawner.cli.exits import CliError
from condorspawner.job_options import SIZE, JobOption
from condorspawner.render import BatchPayload, Renderer
from condorspawner.request import JobRequest, RequestError
from condorspawner.site import SiteError, parse_site

GPU_MEMORY = JobOption(
    "gpu_memory",
    SIZE,
    "gpu_memory_mb",
    "GPU memory",
    "The memory each GPU must have. Write it like 8GB.",
    "--gpu-memory",
    "SIZE",
    "e.g. 8GB",
    toml="gpu_memory",
    form="more",
    limit=("1GB", "1GB", "80GB"),
    submit="gpus_minimum_memory",
)


@pytest.fixture
def gpu_memory(monkeypatch):
    """The pool's options, and GPU memory: one entry, nothing else."""
    monkeypatch.setattr(job_options, "OPTIONS", (*job_options.OPTIONS, GPU_MEMORY))
    return parse_site({"limits": {"gpu_memory": {"max": "40GB"}}})  # the site limits it


def test_a_new_option_is_in_every_place_from_its_one_definition(gpu_memory, tmp_path):
    site = gpu_memory
    page = form.render_form(site)
    assert 'name="gpu_memory"' in page and "GPU memory (1GB to 40GB)" in page
    assert "The memory each GPU must have" in page
    assert form.options_from_form({"gpu_memory": ["8GB"]}) == {"gpu_memory": "8GB"}

    asked = JobRequest.from_options(site, {"gpu_memory": "8GB"})
    assert asked.gpu_memory_mb == 8192 and asked.as_options()["gpu_memory"] == 8192
    with pytest.raises(RequestError, match="gpu_memory: '80GB' is above the site limit of 40GB"):
        JobRequest.from_options(site, {"gpu_memory": "80GB"})
    rendered = Renderer(site).render(asked, BatchPayload(command=("/bin/true",)))
    assert rendered.commands["gpus_minimum_memory"] == "8192"

    args = cli.parser().parse_args(["submit", "--gpu-memory", "4GB", "/bin/true"])
    assert job_request(args, site).gpu_memory_mb == 4096
    bad = cli.parser().parse_args(["submit", "--gpu-memory", "lots", "/bin/true"])
    with pytest.raises(CliError, match=r"^--gpu-memory: 'lots'"):
        job_request(bad, site)

    flow = workflow.parse({"stage": [{"executable": "run.sh", "gpu_memory": "8GB"}]}, tmp_path)
    assert dict(flow.jobs[0].options) == {"gpu_memory": "8GB"}
    with pytest.raises(workflow.WorkflowError, match="gpu_memory must be a number or a string"):
        workflow.parse({"stage": [{"executable": "run.sh", "gpu_memory": [8]}]}, tmp_path)


def test_without_the_definition_it_is_nowhere(site, tmp_path):
    """The same places refuse it when it is not defined (the test above is not vacuous)."""
    assert 'name="gpu_memory"' not in form.render_form(site)
    with pytest.raises(RequestError, match=r"gpu_memory: .* is not an option"):
        JobRequest.from_options(site, {"gpu_memory": "8GB"})
    with pytest.raises(SiteError, match="gpu_memory"):
        parse_site({"limits": {"gpu_memory": {"max": "40GB"}}})
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["submit", "--gpu-memory", "4GB", "/bin/true"])
    with pytest.raises(workflow.WorkflowError, match="unknown key 'gpu_memory'"):
        workflow.parse({"stage": [{"executable": "run.sh", "gpu_memory": "8GB"}]}, tmp_path)


def test_every_option_has_one_flag_and_one_workflow_key():
    flags = [o.flag for o in job_options.OPTIONS]
    keys = [o.toml for o in job_options.OPTIONS if o.toml]
    assert len(set(flags)) == len(flags) and len(set(keys)) == len(keys)
    assert all(o.limit is not None for o in job_options.limited())
    commands = [o.submit for o in job_options.OPTIONS if o.submit]
    assert all(re.fullmatch(r"[a-z_]+", c) for c in commands), commands  # printed as they are
    request = JobRequest.build(parse_site({}))
    assert set(job_options.names()) == set(request.as_options())
    assert hash(request) == hash(JobRequest.build(parse_site({})))  # frozen, as a value


def test_a_fixed_limit_is_still_shown_on_the_form_and_a_bad_variable_is_named(site):
    fixed = parse_site({"limits": {"cpus": {"min": 2, "max": 2, "default": 2}}})
    assert 'name="cpus"' in form.render_form(fixed)  # the user sees what they get
    assert 'name="gpus"' not in form.render_form(site)  # none to be had
    assert job_options.flag_of("environment.A") == "--env A"
    assert job_options.flag_of("container") == "--os"
