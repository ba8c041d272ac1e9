"""hub_config: the site as JupyterHub configuration, and snippets HTCondor's own parser reads."""

from __future__ import annotations

import json
import subprocess
import sys

import classad2
from traitlets.config import Config

import hub_config
from hub_config.snippets import schedd_transform
from tests.harness import site_for_tests


def test_configure_points_jupyterhub_at_the_spawner(tmp_path):
    site_file = tmp_path / "site.toml"
    site_file.write_text(site_for_tests(tmp_path))
    c = Config()
    site = hub_config.configure(c, str(site_file))
    assert c.JupyterHub.spawner_class == "condor"
    assert c.CondorSpawner.site_file == str(site_file)
    assert c.CondorSpawner.start_timeout == site.notebook.start_timeout + 120
    assert c.JupyterHub.tornado_settings == {"slow_spawn_timeout": 0}
    assert c.ConfigurableHTTPProxy.command[0].endswith("configurable-http-proxy")


def htcondor_config(tmp_path, snippets: dict[str, str], names: list[str]) -> dict[str, str]:
    """Values HTCondor's own configuration parser makes of the snippets (in a subprocess)."""
    includes = []
    for name, text in snippets.items():
        (tmp_path / name).write_text(text)
        includes.append(f"include : {tmp_path / name}")
    (tmp_path / "condor_config").write_text(
        "JOB_TRANSFORM_NAMES = SiteOwn\nSTART = (Memory > 100)\nSTARTD_ATTRS = Site\n"
        "EXECUTE = /var/lib/condor/execute\nLIBEXEC = /usr/libexec/condor\n"
        + "\n".join(includes)
        + "\n"
    )
    code = (
        "import htcondor2, json, sys; "
        "print(json.dumps({n: htcondor2.param.get(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *names],
        capture_output=True,
        text=True,
        env={"CONDOR_CONFIG": str(tmp_path / "condor_config"), "PATH": "/bin"},
        check=True,
    ).stdout
    return json.loads(out)


def test_schedd_transform_is_htcondor_configuration(tmp_path):
    values = htcondor_config(
        tmp_path,
        {"transform.conf": schedd_transform("group_jupyter")},
        ["JOB_TRANSFORM_NAMES", "JOB_TRANSFORM_CondorSpawnerNotebooks"],
    )
    assert values["JOB_TRANSFORM_NAMES"] == "SiteOwn CondorSpawnerNotebooks"
    rules = dict(
        line.split(" ", 1) for line in values["JOB_TRANSFORM_CondorSpawnerNotebooks"].splitlines()
    )
    requirement = classad2.ExprTree(rules["REQUIREMENTS"])
    assert requirement.eval(classad2.ClassAd({"CondorSpawnerKind": "notebook"})) is True
    assert requirement.eval(classad2.ClassAd({"CondorSpawnerKind": "batch"})) is False
    assert requirement.eval(classad2.ClassAd({})) is False
    sets = [
        line.split(" ", 2)[1:]
        for line in values["JOB_TRANSFORM_CondorSpawnerNotebooks"].splitlines()
        if line.startswith("SET")
    ]
    assert {name: classad2.ExprTree(value).eval() for name, value in sets} == {
        "IsJupyterJob": True,
        "AcctGroup": "group_jupyter",
    }


def test_execute_point_config_gives_each_os_its_image(tmp_path, site):
    from containers.epconfig import execute_point_config

    values = htcondor_config(
        tmp_path,
        {"ep.conf": execute_point_config(site.catalogue)},
        [
            "START",
            "STARTD_ATTRS",
            "SINGULARITY_IMAGE_EXPR",
            "SINGULARITY_BIND_EXPR",
            "SINGULARITY_JOB",
            "ContainerOSes",
        ],
    )
    assert values["STARTD_ATTRS"] == "Site ContainerOSes"
    assert values["SINGULARITY_BIND_EXPR"] == '"/var/lib/condor/execute,/usr/libexec/condor"'
    image = classad2.ExprTree(values["SINGULARITY_IMAGE_EXPR"])
    for entry in site.catalogue.entries:
        job = classad2.ClassAd({"ContainerOS": entry.name})
        assert image.eval(classad2.ClassAd(), job) == entry.image
    assert image.eval(classad2.ClassAd(), classad2.ClassAd({"ContainerOS": "Beos"})) == (
        classad2.Value.Undefined
    )
    machine = classad2.ClassAd(f"[Memory = 2000; ContainerOSes = {values['ContainerOSes']}]")
    start = classad2.ExprTree(values["START"])
    assert start.eval(machine, classad2.ClassAd({"ContainerOS": "Rocky9"})) is True
    assert start.eval(machine, classad2.ClassAd({"ContainerOS": "Beos"})) is False


def test_the_demos_files_with_a_secret_are_private(tmp_path):
    """With CONDORSPAWNER_DEMO_TOKEN the configuration holds an admin API token: the demo
    directory is 0755 (the accounts reach the pool through it), the file is 0600."""
    import stat

    from hub_config.demo import _write_config

    config = _write_config(tmp_path, 8000, "secret-admin-token-0123", tmp_path / "bin")
    assert "secret-admin-token-0123" in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "site.toml").stat().st_mode) == 0o644  # no secret in it
