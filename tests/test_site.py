"""The site file: the shipped example loads, every mistake names its key."""

from pathlib import Path

import pytest

from condorspawner.site import SiteError, load_site, parse_site

EXAMPLE = Path(__file__).resolve().parents[1] / "hub_config" / "site.example.toml"


def test_built_in_defaults(site):
    assert site.catalogue.default.name == "Rocky9"
    assert site.limits["cpus"].max == 8
    assert site.limits["memory"].default == 2048
    assert site.limits["runtime"].default == 8 * 3600
    assert site.notebook.hub_api == "tunnel"


def test_the_shipped_example_loads():
    site = load_site(EXAMPLE)
    assert site.pool.run_as[-1] == "{user}"
    assert site.limits["memory"].max == 32 * 1024
    assert site.catalogue.names == ["Rocky9", "Debian12"]
    assert site.catalogue.extra_binds == ("/cvmfs",)
    assert site.notebook.grace_period == 300


def test_path_from_environment(monkeypatch, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[limits.cpus]\nmax = 4\n")
    monkeypatch.setenv("CONDORSPAWNER_SITE", str(path))
    assert load_site().limits["cpus"].max == 4
    assert load_site().source == str(path)


@pytest.mark.parametrize(
    ("toml_text", "message"),
    [
        ("[pool]\nshedd = 'x'\n", r"pool\.shedd: unknown key"),
        ("colour = 'blue'\n", r"colour: unknown key"),
        ("[pool]\ncommand_timeout = 'soon'\n", r"pool\.command_timeout: expected a number"),
        ("[pool]\nrun_as = 'sudo'\n", r"pool\.run_as: expected a list of strings"),
        ("[pool.environment]\n'1BAD' = 'x'\n", r"pool\.environment: '1BAD' is not a valid"),
        ("[limits.cpus]\ndefault = 16\nmax = 8\n", r"limits\.cpus\.default: 16 is outside"),
        ("[limits.cpus]\nmin = 4\nmax = 2\ndefault = 3\n", r"limits\.cpus: min 4 is above max 2"),
        ("[limits.memory]\nmax = 'lots'\n", r"limits\.memory\.max: 'lots' is not a size"),
        ("[limits.cpus]\nmax = '8'\n", r"limits\.cpus\.max: expected an integer"),
        ("[limits.tpus]\nmax = 1\n", r"limits\.tpus: unknown key"),
        ("[limits.runtime]\ndefault = true\n", r"limits\.runtime\.default: expected a number"),
        ("[containers]\nmode = 'site'\n", r"containers\.os: no container OS listed"),
        ("[[containers.os]]\nname = 'A'\nimage = '/a'\n", r"exactly one entry must have default"),
        (
            "[[containers.os]]\nname = 'A'\nimage = '/a'\ndefault = true\n"
            "[[containers.os]]\nname = 'a'\nimage = '/b'\n",
            r"'a' is listed twice",
        ),
        ("[[containers.os]]\nname = 'A'\ndefault = true\n", r"containers\.os\[0\]\.image: missing"),
        (
            "[[containers.os]]\nname = 'A'\nimage = '/a b,c'\ndefault = true\ncolour = 1\n",
            r"containers\.os\[0\]\.colour: unknown key",
        ),
        (
            "[[containers.os]]\nname = '9x'\nimage = '/a'\ndefault = true\n",
            r"must start with a letter",
        ),
        (
            "[containers]\nmode = 'magic'\n[[containers.os]]\nname = 'A'\nimage = '/a'\n"
            "default = true\n",
            r"containers\.mode: 'magic' is not one of site, image",
        ),
        ("[notebook]\nhub_api = 'carrier pigeon'\n", r"notebook\.hub_api: expected 'tunnel'"),
        ("[notebook]\ngrace_period = 'a while'\n", r"notebook\.grace_period: 'a while' is not"),
        ("[notebook]\nreattach_concurrency = 0\n", r"reattach_concurrency: expected at least 1"),
        ("[notebook]\nreattach_concurrency = 2.5\n", r"reattach_concurrency: expected an integer"),
        ("[jobs]\nrequirements = '((('\n", r"jobs\.requirements: '\(\(\(' is not a single ClassAd"),
        ("[jobs]\ntemplate_dir = '/no/such/dir'\n", r"jobs\.template_dir: '/no/such/dir' is not"),
        ("[pool\n", r"not valid TOML"),
    ],
)
def test_mistakes_are_refused_naming_the_key(make_site, toml_text, message):
    with pytest.raises(SiteError, match=message):
        make_site(toml_text)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(SiteError, match="does not exist"):
        load_site(tmp_path / "nope.toml")


def test_image_paths_are_checked():
    with pytest.raises(SiteError, match=r"containers\.os\[0\]\.image"):
        parse_site({"containers": {"os": [{"name": "A", "image": "/a\nb", "default": True}]}})


def test_the_admin_guide_and_the_example_name_every_key_the_site_file_accepts():
    """docs/admin.md's key table and hub_config/site.example.toml (where every admin
    starts) hold every key of [pool], [jobs] and [notebook] that the site file accepts."""
    import dataclasses
    import re

    from condorspawner.site import Jobs, Notebook, Pool

    project = EXAMPLE.parents[1]
    table = (project / "docs" / "admin.md").read_text()
    example = EXAMPLE.read_text()
    sections = dict(re.findall(r"(?ms)^\[(\w+)\]\n(.*?)(?=^\[|\Z)", example))
    missing = []
    for section, kind in (("pool", Pool), ("jobs", Jobs), ("notebook", Notebook)):
        for field in dataclasses.fields(kind):
            key = f"{section}.{field.name}"
            if f"| `{key}` |" not in table:
                missing.append(f"docs/admin.md: {key}")
            if not re.search(rf"(?m)^#? ?{field.name} = ", sections.get(section, "")):
                missing.append(f"site.example.toml: {key}")
    assert not missing, missing
