"""The catalogue, the execute-point configuration (evaluated with classad2), image discovery."""

import re

import classad2
import pytest

from containers import Catalogue, CatalogueError, ContainerOS
from containers.discover import discover_images, newest_image
from containers.epconfig import execute_point_config


@pytest.fixture
def catalogue():
    return Catalogue(
        entries=(
            ContainerOS("Rocky9", "Rocky Linux 9", "/img/rocky9.sif", default=True),
            ContainerOS("Debian12", "Debian 12", "/img/debian 12/$ver.sif"),
            ContainerOS("Ubuntu24", "Ubuntu 24.04", '/img/ubuntu"24'),
        ),
        extra_binds=("/cvmfs", "/data/$project"),
    )


def config_values(text: str) -> dict[str, str]:
    """name -> value of a configuration snippet, with '\\044' kept as written."""
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.partition(" = ")
        values[name] = value
    return values


def test_choice_is_case_insensitive_and_defaults(catalogue):
    assert catalogue.choose("debian12").name == "Debian12"
    assert catalogue.choose(None).name == "Rocky9"
    with pytest.raises(CatalogueError, match="choose one of Rocky9, Debian12, Ubuntu24"):
        catalogue.choose("Fedora")


def test_image_expression_gives_each_os_its_image(catalogue):
    values = config_values(execute_point_config(catalogue))
    expr = classad2.ExprTree(values["SINGULARITY_IMAGE_EXPR"])
    for entry in catalogue.entries:
        for spelling in (entry.name, entry.name.upper()):
            job = classad2.ClassAd({"ContainerOS": spelling})
            assert expr.eval(classad2.ClassAd(), job) == entry.image
    unknown = expr.eval(classad2.ClassAd(), classad2.ClassAd({"ContainerOS": "Fedora"}))
    assert isinstance(unknown, classad2.Value) and unknown == classad2.Value.Undefined
    assert (
        classad2.ExprTree(values["SINGULARITY_JOB"]).eval(
            classad2.ClassAd(), classad2.ClassAd({"ContainerOS": "Rocky9"})
        )
        is True
    )
    assert (
        classad2.ExprTree(values["SINGULARITY_JOB"]).eval(classad2.ClassAd(), classad2.ClassAd())
        is False
    )


def test_start_refuses_an_os_the_node_lacks(catalogue):
    values = config_values(execute_point_config(catalogue))
    start = values["START"].replace("$(START)", "true")
    machine = classad2.ClassAd(f"[ContainerOSes = {values['ContainerOSes']}]")
    assert list(machine["ContainerOSes"]) == ["Rocky9", "Debian12", "Ubuntu24"]

    def starts(job):
        return classad2.ExprTree(start).eval(machine, classad2.ClassAd(job))

    assert starts({"ContainerOS": "debian12"}) is True
    assert starts({}) is True
    assert starts({"ContainerOS": "Fedora"}) is False


def test_bind_expression_keeps_config_macros_and_escapes_site_paths(catalogue):
    values = config_values(execute_point_config(catalogue))
    assert values["SINGULARITY_BIND_EXPR"].startswith('"$(EXECUTE),$(LIBEXEC),/cvmfs,')
    # '$' of a site path must not reach configuration macro expansion
    assert "$project" not in values["SINGULARITY_BIND_EXPR"]
    bind = values["SINGULARITY_BIND_EXPR"].replace("$(EXECUTE)", "/x").replace("$(LIBEXEC)", "/l")
    assert classad2.ExprTree(bind).eval() == "/x,/l,/cvmfs,/data/$project"
    assert not re.search(
        r"\$(?!\((EXECUTE|LIBEXEC|START|STARTD_ATTRS)\))", execute_point_config(catalogue)
    )


def make_image(root, os_name, date, *, complete=True, sif=None):
    directory = root / os_name / date
    directory.mkdir(parents=True)
    if sif:
        (directory / sif).write_text("image")
    if complete:
        (directory / ".complete").write_text("")
    return directory


def test_discovery_takes_the_newest_complete_image(tmp_path):
    make_image(tmp_path, "Rocky9", "2026-01-10", sif="rocky9.sif")
    newest = make_image(tmp_path, "Rocky9", "2026-03-02", sif="rocky9.sif")
    make_image(tmp_path, "Rocky9", "2026-04-01", complete=False, sif="rocky9.sif")
    make_image(tmp_path, "Rocky9", "2026-05-01.tmp-copy", complete=False)
    (tmp_path / "Rocky9" / "latest").mkdir()
    sandbox = make_image(tmp_path, "Debian12", "2025-12-24T0300")
    assert newest_image(tmp_path / "Rocky9") == newest / "rocky9.sif"
    found = discover_images(tmp_path, ["Rocky9", "Debian12", "Ubuntu24"])
    assert found == {"Rocky9": str(newest / "rocky9.sif"), "Debian12": str(sandbox)}


def test_discovered_images_feed_the_config(tmp_path, catalogue):
    make_image(tmp_path, "Rocky9", "2026-03-02", sif="r.sif")
    updated = catalogue.with_images(discover_images(tmp_path, catalogue.names))
    expr = classad2.ExprTree(config_values(execute_point_config(updated))["SINGULARITY_IMAGE_EXPR"])
    job = classad2.ClassAd({"ContainerOS": "Rocky9"})
    assert expr.eval(classad2.ClassAd(), job) == str(tmp_path / "Rocky9/2026-03-02/r.sif")


def test_discovered_images_keep_everything_else(tmp_path):
    described = Catalogue(
        entries=(ContainerOS("Rocky9", "Rocky", "/old.sif", default=True, description="EL9"),),
        mode="image",
        extra_binds=("/cvmfs",),
    )
    make_image(tmp_path, "Rocky9", "2026-03-02", sif="r.sif")
    updated = described.with_images(discover_images(tmp_path, described.names))
    (entry,) = updated.entries
    assert entry.image == str(tmp_path / "Rocky9/2026-03-02/r.sif")
    assert (entry.label, entry.default, entry.description) == ("Rocky", True, "EL9")
    assert (updated.mode, updated.extra_binds) == ("image", ("/cvmfs",))
