"""The options form and profiles: the site's limits shown, presets applied and enforced."""

import asyncio
import io
import logging
import os
import re
from html import unescape

import pytest

from condorspawner import form, job_options
from condorspawner.condor import Condor, parse_json_ads
from condorspawner.options import InvalidOptions, quiet_invalid_options
from condorspawner.pool_status import FreeSlot, PoolStatus, describe_room, parse_slots, room
from condorspawner.request import JobRequest, RequestError
from condorspawner.site import Pool, parse_site
from tests.harness import case

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


# --- a form that answers questions ----------------------------------------------------

ROCKY = "Enterprise Linux, binary compatible with RHEL 9"


def test_the_os_is_a_real_select_with_each_description(make_site):
    site = make_site(
        """\
        [[containers.os]]
        name = "Rocky9"
        label = "Rocky Linux 9"
        image = "/i/r"
        default = true
        [[containers.os]]
        name = "Alma10"
        label = "AlmaLinux 10"
        description = "The <newest> enterprise Linux"
        image = "/i/a"
        """
    )
    html = form.render_form(site)
    assert '<select class="form-select" id="cs-container" name="container"' in html
    assert '<li data-os="Rocky9"><strong>Rocky Linux 9</strong>: ' + ROCKY in html
    assert "<strong>AlmaLinux 10</strong>: The &lt;newest&gt; enterprise Linux" in html
    assert "free" not in html  # nothing said about the pool when it was not asked


def test_builtin_catalogue_entries_have_descriptions(site):
    assert [bool(e.description) for e in site.catalogue.entries] == [True, True]


def test_a_description_must_be_text(make_site):
    from condorspawner.site import SiteError

    with pytest.raises(SiteError, match=r"containers.os\[0\].description: expected a string"):
        make_site('[[containers.os]]\nname = "A"\nimage = "/i"\ndefault = true\ndescription = 3\n')


def test_every_limit_has_help_with_its_meaning_and_range(site):
    html = form.render_form(site)
    for name, range_text in (("cpus", "1 to 8"), ("memory", "128MB to 16GB"),
                             ("runtime", "5m to 2d"), ("disk", "100MB to 100GB")):  # fmt: skip
        help_text = html.split(f'id="cs-{name}-help">')[1].split("</div>")[0]
        assert f"Allowed: {range_text}" in help_text, help_text
        assert job_options.option(name).help.split(" ")[0] in help_text
        assert f'aria-describedby="cs-{name}-help"' in html
    assert "It stops 5m before this limit" in html  # the site's grace period


def test_optional_fields_only_where_the_site_allows_them(site, make_site):
    html = form.render_form(site)
    assert 'name="gpus"' not in html  # max 0 here
    assert 'name="disk"' in html and 'name="environment"' in html
    assert "<details" in html and " open" not in html.split("<details")[1].split(">")[0]
    gpu_site = make_site(
        "[limits.gpus]\nmax = 2\n[limits.disk]\ndefault = '5GB'\nmin = '5GB'\nmax = '5GB'\n"
    )
    gpu_html = form.render_form(gpu_site)
    assert 'name="gpus"' in gpu_html and "GPUs (0 to 2)" in gpu_html
    assert 'name="disk"' not in gpu_html  # nothing to choose
    assert "More options (environment variables)" in gpu_html


def test_values_are_kept_and_the_wrong_field_marked(site):
    values = {"cpus": "64", "memory": "3GB", "container": "Debian12", "environment": "A=1\nB=2"}
    html = form.render_form(site, values=values, error_field="cpus")
    assert 'class="form-control is-invalid" aria-invalid="true" id="cs-cpus"' in html
    assert 'value="64"' in html and 'value="3GB"' in html
    assert '<option value="Debian12" selected>' in html
    assert '<option value="Rocky9" selected>' not in html
    assert ">A=1\nB=2</textarea>" in html and '<details class="mb-3" open>' in html
    # REST API values (numbers, a table) are shown the way users write them
    api = form.render_form(
        site, values={"memory": 4096, "runtime": 5400, "environment": {"X": "1"}}
    )
    assert 'value="4GB"' in api and 'value="1h30m"' in api and ">X=1</textarea>" in api


def test_form_text_becomes_options_with_environment_lines():
    data = {"environment": ["  A=1\r\nB=x y\n"], "disk": ["20GB"], "gpus": [""]}
    options = form.options_from_form(data)
    assert options == {"environment": "A=1\r\nB=x y", "disk": "20GB"}
    assert JobRequest.build(parse_site({}), environment=options["environment"]).environment == (
        ("A", "1"),
        ("B", "x y"),
    )


# --- what the pool can give now --------------------------------------------------------


def slot(cpus, memory, gpus=0, oses=("rocky9",), partitionable=True):
    return FreeSlot(cpus, memory, gpus, oses, partitionable)


def test_free_slots_for_an_os_and_a_size():
    slots = [slot(4, 8192), slot(2, 2048, oses=("debian12",), partitionable=False),
             slot(8, 65536, gpus=1, oses=None)]  # fmt: skip
    assert room(slots, "Rocky9", 1, 2048, 0) == 4
    assert room(slots, "Rocky9", 2, 4096, 0) == 2
    assert room(slots, "Rocky9", 3, 1024, 0) == 1
    assert room(slots, "Debian12", 1, 1024, 0) == 1  # a static slot holds one job
    assert room(slots, "Rocky9", 1, 1024, 1) == 0  # the GPU slot advertises no OS
    assert describe_room(2, 2, 4096, 0) == (
        "2 free slots now (2 CPUs, 4GB each): your server can start at once"
    )
    assert describe_room(0, 8, 1024, 8).startswith("none free now: your server will queue")


def test_the_form_says_what_each_os_can_get_now(site):
    slots = [slot(4, 8192, oses=("rocky9", "debian12")), slot(1, 1024, oses=("debian12",))]
    html = form.render_form(site, slots=slots, values={"cpus": "2", "memory": "2GB"})
    rocky = html.split('data-os="rocky9">')[1].split("</span>")[0]
    debian = html.split('data-os="debian12">')[1].split("</span>")[0]
    assert rocky.startswith("2 free slots now (2 CPUs, 2GB each)")
    assert debian.startswith("2 free slots now")
    big = form.render_form(site, slots=slots, values={"cpus": "8"})
    assert "none free now: your server will queue" in big
    assert 'id="cs-pool"' in big and "<script>" in big  # the line follows the fields


def test_recorded_condor_status_answer_is_understood(reference):
    ads = parse_json_ads(case("status_json")["stdout"])
    free = parse_slots(ads)
    assert free == [FreeSlot(1, 15616, 0, ("rocky9", "debian12", "rocky8"), True)]


@pytest.fixture
def fresh_status():
    PoolStatus.forget_all()
    yield
    PoolStatus.forget_all()


def test_one_condor_status_for_many_forms_within_the_interval(replay, fresh_status):
    replay("condor_status", "status_json", sleep=0.3)
    status = PoolStatus.shared(Condor(Pool()), interval=60)

    async def many_renders():
        together = await asyncio.gather(*(status.free_slots() for _ in range(20)))
        later = [await PoolStatus.shared(Condor(Pool()), 60).free_slots() for _ in range(5)]
        return together + later

    answers = asyncio.run(many_renders())
    assert len(replay.calls()) == 1
    assert all(a == answers[0] and a for a in answers)
    argv = replay.calls()[0]["argv"][1:]
    assert argv[:3] == ["-json", "-constraint", 'State == "Unclaimed"']
    # the query projects every attribute the parser reads (a slot's OS list included)
    asked = set(argv[argv.index("-attributes") + 1].split(","))
    assert {"Cpus", "Memory", "GPUs", "ContainerOSes", "ContainerOSList"} <= asked
    status.interval = 0  # the interval passed: the next render asks again
    asyncio.run(status.free_slots())
    assert len(replay.calls()) == 2


def test_a_failed_query_shows_nothing_and_is_not_repeated_at_once(
    replay, fresh_status, site, tmp_path
):
    tool = replay("condor_status")  # then made to fail as an unreachable collector does
    calls = tmp_path / "status-calls"
    tool.write_text(
        f"#!/bin/sh\necho x >> {calls}\necho 'Error: communication error' >&2\nexit 1\n"
    )
    status = PoolStatus.shared(Condor(Pool()), interval=60)
    assert asyncio.run(status.free_slots()) is None
    assert asyncio.run(status.free_slots()) is None
    assert calls.read_text().count("x") == 1
    html = form.render_form(site, slots=None)
    assert "free" not in html and 'name="container"' in html


def test_localpool_answers_with_its_free_slot(pool, fresh_status, monkeypatch):
    monkeypatch.setenv("PATH", pool.env["PATH"])
    monkeypatch.setenv("LOCALPOOL_DIR", pool.env["LOCALPOOL_DIR"])
    slots = asyncio.run(PoolStatus.shared(Condor(Pool()), 60).free_slots())
    assert slots == [FreeSlot(4, 8192, 0, ("rocky9", "debian12"), True)]
    assert room(slots, "Rocky9", 2, 4096, 0) == 2 and room(slots, "Ubuntu24", 1, 128, 0) == 0


# --- quiet logs for user mistakes ---------------------------------------------------------


def test_jupyterhubs_several_records_of_one_mistake_become_one_warning():
    """The records JupyterHub writes for one bad option (spawner, User.spawn, the page
    handler with a traceback, tornado's own line) leave one warning naming user and field."""
    logger = logging.getLogger(f"test-hub-{os.getpid()}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(handler)
    child = logging.getLogger(f"tornado-like-{os.getpid()}")
    child.parent = logger
    quiet_invalid_options(logger)
    quiet_invalid_options(logger)  # installing twice changes nothing
    err = InvalidOptions("alice", RequestError("cpus", 64, "is above the site limit of 4"))
    try:
        raise err
    except InvalidOptions as e:
        logger.exception("Exception applying user_options for %s", "alice")
        logger.error(f"Error starting alice's server: {e}")
        child.warning("400 POST /hub/spawn (127.0.0.1): %s", e)
        logger.warning("an unrelated warning while it is handled")
        logger.info("Stopping alice")
    logger.error("a later error")
    assert stream.getvalue().splitlines() == [
        "[WARNING] Invalid server options from user alice (field cpus): "
        "cpus: 64 is above the site limit of 4",
        "[WARNING] an unrelated warning while it is handled",
        "[INFO] Stopping alice",
        "[ERROR] a later error",
    ]
    assert str(err) == err.jupyterhub_message == "cpus: 64 is above the site limit of 4"
    assert err.status_code == 400


def test_the_quiet_filter_leaves_every_other_error_alone():
    """Only our own InvalidOptions is quietened: another exception (an HTTPError too, or one
    raised while ours is being handled, quoting the same text) keeps its level and traceback."""
    from tornado import web

    logger = logging.getLogger(f"test-hub-other-{os.getpid()}")
    logger.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(handler)
    quiet_invalid_options(logger)
    message = "cpus: 64 is above the site limit of 4"
    try:
        raise web.HTTPError(400, message)
    except web.HTTPError:
        logger.exception("another hook refused: %s", message)
    try:
        raise InvalidOptions("alice", RequestError("cpus", 64, "is above the site limit of 4"))
    except InvalidOptions:
        try:
            raise RuntimeError(f"cleanup failed after {message}")
        except RuntimeError:
            logger.exception("Failed to cleanup alice's server: %s", message)
    text = stream.getvalue()
    assert text.count("[ERROR]") == 2 and "Invalid server options" not in text, text
    assert text.startswith(f"[ERROR] another hook refused: {message}\n"), text
    assert f"[ERROR] Failed to cleanup alice's server: {message}\n" in text, text
    assert "RuntimeError: cleanup failed" in text and "HTTPError" in text


class Browserless:
    """A user's browser without the browser: cookies, the login form, _xsrf."""

    def __init__(self, url: str) -> None:
        import http.cookiejar
        import urllib.request

        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def request(self, path: str, fields: dict | None = None) -> tuple[int, str]:
        import urllib.error
        import urllib.parse

        data = None
        if fields is not None:
            data = urllib.parse.urlencode({**fields, "_xsrf": self.xsrf}).encode()
        try:
            with self.opener.open(f"{self.url}{path}", data=data, timeout=30) as response:
                status, page = response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            status, page = err.code, err.read().decode()
        # the hub's xsrf token changes with the login: each page carries the current one
        token = re.search(r'name="_xsrf" value="([^"]+)"|[?&]_xsrf=([^"&]+)', page)
        if token:
            self.xsrf = urllib.parse.unquote(unescape(token.group(1) or token.group(2)))
        return status, page

    def login(self, name: str, password: str) -> None:
        self.request("/hub/login")
        status, page = self.request("/hub/login", {"username": name, "password": password})
        assert status == 200 and "Server Options" in page, (status, page[:500])


@pytest.mark.skipif(os.geteuid() != 0, reason="real accounts and sudo need root")
def test_a_mistake_keeps_the_values_shows_a_clean_message_and_logs_one_line(
    sudo_hub, system_pool, unix_users
):
    hub, user = sudo_hub, unix_users("f")
    browser = Browserless(hub.url)
    browser.login(user, "test-password")
    status, page = browser.request("/hub/spawn")
    assert status == 200 and "Enterprise Linux, like most clusters run" in page  # the demo's
    free = system_pool.run("condor_status", "-af", "Cpus", "Memory").stdout.split()
    can = min(int(free[0]) // 1, int(free[1]) // 1024)  # the demo site's 1 CPU, 1GB
    assert f"{can} free slots now (1 CPU, 1GB each)" in page, page
    log = hub.root / "jupyterhub.log"
    seen = len(log.read_text().splitlines())
    fields = {"cpus": "64", "memory": "3GB", "runtime": "2h", "container": "Debian12"}
    status, page = browser.request("/hub/spawn", {**fields, "environment": "A=1"})
    assert status == 400
    message = "cpus: &#39;64&#39; is above the site limit of 4 (allowed 1 to 4)"
    assert f"Error: {message}</p>" in page and "HTTP 400" not in page
    assert 'aria-invalid="true" id="cs-cpus"' in page and 'value="64"' in page
    assert 'value="3GB"' in page and 'value="2h"' in page and ">A=1</textarea>" in page
    assert '<option value="Debian12" selected>' in page
    # the REST API: 400 and the same kind of message, and one line too
    status, body = hub.api("POST", f"/users/{user}/server", {"user_options": {"gpus": 1}})
    assert status == 400 and body["message"].startswith("gpus: 1 is above the site limit of 0")
    lines = log.read_text().splitlines()[seen:]

    text = "\n".join(lines)
    for field in ("cpus", "gpus"):
        about = [line for line in lines if f"(field {field})" in line or f"{field}: " in line]
        assert len(about) == 1, text
        assert about[0].startswith("[W ") and f"from user {user} (field {field})" in about[0]
    assert "Traceback" not in text and not any(line.startswith("[E ") for line in lines), text
    assert hub.job_of(user) is None
