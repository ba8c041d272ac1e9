"""Shared fixtures: the site, the renderer, real HTCondor recordings and tool replays."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
import threading
from http.server import HTTPServer
from pathlib import Path

import pytest

from condorspawner.render import Renderer
from condorspawner.site import Site, parse_site
from tests import realpool
from tests.harness import (
    CONDORSUB,
    REFERENCE,
    Hello,
    Hub,
    Pool,
    SystemPool,
    UnixUsers,
    case,
    site_for_tests,
)


@pytest.fixture(scope="session")
def reference() -> Path:
    """What a real HTCondor 25.0 pool printed (tests/data/htcondor)."""
    if not REFERENCE.is_dir():
        pytest.fail(f"the HTCondor reference recordings are missing: {REFERENCE}")
    return REFERENCE


@pytest.fixture
def site() -> Site:
    """The built-in site: Rocky9 (default) and Debian12, cpus 1..8, memory up to 16GB."""
    return parse_site({})


@pytest.fixture
def make_site(tmp_path):
    """Build a Site from a TOML snippet written to a file (as admins do)."""
    from condorspawner.site import load_site

    def make(toml_text: str) -> Site:
        path = tmp_path / "site.toml"
        path.write_text(textwrap.dedent(toml_text))
        return load_site(path)

    return make


@pytest.fixture
def renderer(site: Site) -> Renderer:
    return Renderer(site)


@pytest.fixture
def replay(tmp_path, monkeypatch):
    """Put stand-in ``condor_*`` tools first on PATH that print a recorded case.

    ``replay("condor_rm", "rm_unknown")`` makes ``condor_rm`` print exactly what
    real HTCondor printed in that case and exit with its code; every call's
    argv and selected environment are appended to ``calls.jsonl``.
    """
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    def install(tool: str, case_name: str | None = None, *, sleep: float = 0.0) -> Path:
        recorded = case(case_name) if case_name else {"stdout": "", "stderr": "", "rc": 0}
        script = bindir / tool
        script.write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys, time\n"
            f"with open({str(calls)!r}, 'a') as f:\n"
            "    f.write(json.dumps({'argv': sys.argv, 'cwd': os.getcwd(),\n"
            "        'CONDOR_CONFIG': os.environ.get('CONDOR_CONFIG')}) + '\\n')\n"
            f"time.sleep({sleep})\n"
            f"sys.stdout.write({recorded['stdout']!r})\n"
            f"sys.stderr.write({recorded['stderr']!r})\n"
            f"sys.exit({recorded['rc']})\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return script

    def read_calls() -> list[dict]:
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text().splitlines()]

    install.calls = read_calls
    return install


BACKENDS = ["localpool", pytest.param("htcondor", marks=pytest.mark.htcondor)]


def pytest_generate_tests(metafunc):
    """A single-account test marked ``both_pools`` runs on localpool and the real pool."""
    if "pool_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_pools"
    ):
        metafunc.parametrize("pool_backend", BACKENDS, indirect=True)


def _on(request, name: str) -> str:
    """``name``, once a test on the real pool has it (else skipped with the reason)."""
    if name == "htcondor":
        why = request.node.get_closest_marker("localpool_only")
        if why:
            pytest.skip(f"localpool only: {why.args[0]}")
        if realpool.release_dir() is None:
            pytest.skip(realpool.HOW_TO_RUN)
    return name


@pytest.fixture
def pool_backend(request) -> str:
    """localpool, or (``both_pools`` tests) also the real HTCondor."""
    return _on(request, getattr(request, "param", "localpool"))


@pytest.fixture
def pool(request, tmp_path, pool_backend):
    """A fresh localpool (4 cpus, 8GB, Rocky9 + Debian12) with fast cycles; stopped after.
    On the real HTCondor (``both_pools``): a real pool as one ordinary account uses it."""
    if pool_backend == "htcondor":
        public, users = request.getfixturevalue("public_tmp"), request.getfixturevalue("unix_users")
        real = realpool.RealPool.like_localpool(public)
        real.start()
        yield realpool.AccountPool(real, users("p"))
        real.stop()
        return
    root = tmp_path / "pool"
    submit_dir = tmp_path / "submit"
    submit_dir.mkdir()
    p = Pool(root, submit_dir)
    started = p.localpool(
        "start",
        "--cpus",
        "4",
        "--memory",
        "8GB",
        "--container-os",
        "Rocky9,Debian12",
        "--cycle-seconds",
        "0.05",
        "--periodic-seconds",
        "0.5",
    )
    assert started.returncode == 0, started.stdout + started.stderr
    yield p
    p.localpool("stop", "--remove-jobs")


@pytest.fixture
def host_server():
    """An HTTP server on the host's loopback ("the hub side"); yields its port."""
    server = HTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def public_tmp():
    """A fresh directory every account can traverse (pytest's own tmp dirs are 0700)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="condorspawner-users-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unix_users(public_tmp):
    """``unix_users("a")`` makes a real account (``cs<random><suffix>``); all removed after."""
    import shutil

    if os.geteuid() != 0:
        pytest.fail("unix_users needs root (useradd, userdel)")
    if not shutil.which("useradd") or not shutil.which("userdel"):
        pytest.fail("unix_users needs useradd and userdel (Debian package passwd)")
    homes = public_tmp / "homes"
    homes.mkdir(mode=0o755)
    users = UnixUsers(homes)
    yield users
    users.remove_all()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Which pool a multi-user test runs on: localpool, or the real HTCondor of
    ``CONDORSPAWNER_HTCONDOR`` (the ``htcondor`` tier, ``-m htcondor``)."""
    return _on(request, request.param)


@pytest.fixture
def system_pool(request, backend, unix_users, public_tmp):
    """A pool started as root that several accounts use; ``run(..., user=NAME)``: localpool
    installed under a prefix, or a real HTCondor pool (``backend``), the same interface.

    Parametrise with ``@pytest.mark.parametrize("system_pool", ["shared"], indirect=True)``
    (default ``isolated``); a dict param may also name ``emulate``, ``schedds``, ``start_options``
    (localpool's network, emulation and start options; the real pool honours ``schedds``).
    """
    param = getattr(request, "param", "isolated")
    options = param if isinstance(param, dict) else {"network": param}
    if backend == "htcondor":
        pool = realpool.RealPool.like_localpool(
            public_tmp,
            schedds=options.get("schedds", 1),
            start_options=options.get("start_options"),
        )
    else:
        pool = SystemPool(public_tmp, **options)
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def sudo_hub(system_pool, public_tmp):
    """A real JupyterHub as root acting for each user through sudo (the site's run_as)
    on the system pool, as a site runs it."""
    from hub_config.demo import site_toml

    root = public_tmp / "hub"
    root.mkdir(mode=0o755)
    shim = root / "shim"
    hub = Hub(
        root,
        system_pool,
        site=site_toml(None, start_timeout="20s", run_as_users=str(shim)),
        extra_config='c.CondorSpawner.submit_root = "{home}/.condorspawner"\n',
    )
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def cli(pool, tmp_path):
    """condorsub in the pool's submit directory, with the pool's tools and the test site
    (``cli.site_file``)."""
    site_file = pool.scratch / "site.toml"
    site_file.write_text(site_for_tests(pool.scratch / "work"))
    pool.env["CONDORSPAWNER_SITE"] = str(site_file)

    def run(*args: str, input: str | None = None, timeout: float = 120):
        return pool.run(CONDORSUB, *args, input=input, timeout=timeout)

    run.site_file = site_file
    return run
