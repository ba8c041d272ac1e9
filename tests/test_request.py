"""JobRequest: units as users write them, site limits, one error type naming the field."""

import pytest

from condorspawner.request import JobRequest, RequestError


def test_defaults_come_from_the_site(site):
    req = JobRequest.build(site)
    assert (req.cpus, req.memory_mb, req.disk_mb, req.gpus) == (1, 2048, 10240, 0)
    assert req.runtime_s == 8 * 3600
    assert req.container.name == "Rocky9"


def test_form_strings_are_parsed(site):
    req = JobRequest.from_form(
        site,
        {
            "cpus": ["2"],
            "memory": ["4GB"],
            "runtime": ["90m"],
            "container": ["debian12"],
            "disk": [""],
            "environment": ["A=1\nB=two words\n"],
        },
    )
    assert (req.cpus, req.memory_mb, req.runtime_s) == (2, 4096, 5400)
    assert req.disk_mb == site.limits["disk"].default
    assert req.container.name == "Debian12"
    assert dict(req.environment) == {"A": "1", "B": "two words"}


def test_rest_options_round_trip(site):
    req = JobRequest.from_options(
        site,
        {
            "cpus": 2,
            "memory": 4096,
            "runtime": 3600,
            "container": "Debian12",
            "environment": {"X": "y"},
        },
    )
    assert JobRequest.from_options(site, req.as_options()) == req


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cpus": 64}, r"cpus: 64 is above the site limit of 8 \(allowed 1 to 8\)"),
        ({"cpus": 0}, r"cpus: 0 is below the site minimum of 1"),
        (
            {"memory": "64GB"},
            r"memory: '64GB' is above the site limit of 16GB \(allowed 128MB to 16GB\)",
        ),
        ({"runtime": "3d"}, r"runtime: '3d' is above the site limit of 2d"),
        ({"gpus": 1}, r"gpus: 1 is above the site limit of 0"),
        ({"cpus": "two"}, r"cpus: 'two' is not a whole number"),
        ({"cpus": 2.5}, r"cpus: 2.5 is not a whole number"),
        ({"cpus": True}, r"cpus: True is not a whole number"),
        ({"cpus": [2]}, r"cpus: \[2\] is not a whole number"),
        ({"memory": "4 XB"}, r"memory: '4 XB' is not a size"),
        ({"memory": [4]}, r"memory: \[4\] is not a size or duration"),
        ({"runtime": "soon"}, r"runtime: 'soon' is not a duration"),
        (
            {"container": "Windows11"},
            r"container: 'Windows11' is not offered here; choose one of Rocky9, Debian12",
        ),
        ({"container": 7}, r"container: 7 is not offered"),
        (
            {"environment": {"1X": "a"}},
            r"environment: '1X' is not a valid environment variable name",
        ),
        ({"environment": {"_CONDOR_X": "a"}}, r"environment: '_CONDOR_X' is reserved"),
        # JupyterHub's and HTCondor's secrets: a job ad is readable by every user
        ({"environment": {"JPY_API_TOKEN": "a"}}, r"environment: 'JPY_API_TOKEN' is reserved"),
        ({"environment": {"jpy_cookie": "a"}}, r"environment: 'jpy_cookie' is reserved"),
        ({"environment": {"BEARER_TOKEN_FILE": "a"}}, r"'BEARER_TOKEN_FILE' is reserved"),
        ({"environment": {"BEARER_TOKEN": "a"}}, r"environment: 'BEARER_TOKEN' is reserved"),
        ({"environment": {"A\n": "a"}}, r"environment: 'A\\n' is not a valid"),
        ({"environment": {"X": "a\nb"}}, r"environment\.X: 'a\\nb' contains a control character"),
        ({"environment": {"X": 5}}, r"environment\.X: 5 is not text"),
        ({"environment": ["novalue"]}, r"environment: 'novalue' is not NAME=VALUE"),
        ({"requirements": "((("}, r"requirements: '\(\(\(' is not a single ClassAd expression"),
        ({"label": "x" * 300}, r"label: '.*\.\.\.' is longer than 200"),
        ({"colour": "red"}, r"colour: 'red' is not an option"),
    ],
)
def test_violations_name_field_value_and_rule(site, options, message):
    with pytest.raises(RequestError, match=message) as info:
        JobRequest.from_options(site, options)
    assert info.value.field.split(".")[0] == next(iter(options))


def test_limits_follow_the_site_file(make_site):
    site = make_site("[limits.cpus]\nmax = 32\ndefault = 4\n")
    assert JobRequest.build(site).cpus == 4
    assert JobRequest.build(site, cpus=32).cpus == 32
