"""The options form and profiles: the site's limits shown, presets applied and enforced."""

import pytest

from condorspawner import form
from condorspawner.request import JobRequest, RequestError

PROFILES = [
    {"display_name": "Small", "slug": "small", "user_options": {"cpus": 1, "memory": "1GB"}},
    {
        "display_name": "Rocky only, big",
        "slug": "big",
        "default": True,
        "user_options": {"cpus": 4, "memory": "8GB"},
        "allowed_containers": ["Rocky9"],
    },
]


def test_form_shows_limits_and_container_labels(site):
    html = form.render_form(site)
    assert "CPUs (1 to 8)" in html and 'max="8"' in html
    assert "Memory (128MB to 16GB)" in html and 'value="2GB"' in html
    assert "Runtime (5m to 2d)" in html
    assert '<option value="Rocky9" selected>Rocky Linux 9</option>' in html
    assert '<option value="Debian12">Debian 12</option>' in html
    assert "GPUs" not in html  # this site has none
    assert 'name="profile"' not in html


def test_form_escapes_site_text(make_site):
    site = make_site(
        '[[containers.os]]\nname = "Rocky9"\nlabel = "<b>R</b>"\nimage = "/i"\ndefault = true\n'
    )
    assert "&lt;b&gt;R&lt;/b&gt;" in form.render_form(site)


def test_profiles_fill_in_and_restrict(site):
    html = form.render_form(site, PROFILES)
    assert '<option value="big" selected>Rocky only, big</option>' in html
    default = form.find_profile(PROFILES, None)
    assert default["slug"] == "big"
    options = form.apply_profile(default, {"cpus": "2"})
    assert options == {"cpus": "2", "memory": "8GB", "container": "Rocky9"}
    assert JobRequest.from_options(site, options).memory_mb == 8192
    with pytest.raises(RequestError, match="container: 'Debian12' is not offered in profile 'big'"):
        form.apply_profile(default, {"container": "Debian12"})
    with pytest.raises(RequestError, match="profile: 'huge' is not offered; choose one of small"):
        form.find_profile(PROFILES, "huge")


def test_form_data_to_options():
    data = {
        "cpus": ["2"],
        "memory": [""],
        "container": ["Debian12"],
        "profile": ["small"],
        "unrelated": ["x"],
    }
    assert form.options_from_form(data) == {
        "cpus": "2",
        "container": "Debian12",
        "profile": "small",
    }
