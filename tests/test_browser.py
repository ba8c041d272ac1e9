"""The demo in a real browser: headless Debian Chromium driven by Playwright.

The demo runs as a site runs the hub (root, sudo, one Unix account per user).
Two users log in from two browser contexts; a name that cannot be an account is
refused with a message. The first reads the form (limits, each OS's
description), makes a mistake (the page says which, cleanly, and keeps the other
values), chooses Debian 12 and 2 CPUs, watches the progress page tell each
phase in order, lands in JupyterLab, runs a cell that prints the container OS
and OMP_NUM_THREADS, and in a JupyterLab terminal runs ``condorsub submit
--wait`` and ``condorsub q``; the second spawns with the defaults. Each job runs
as its own account ``demo-<name>`` (its Owner, and ``ps`` of its processes).
The first stops the server from the hub's home page: the job leaves the queue,
the home page offers Start again, and the batch job's output is in the work
directory that came back. Ctrl-C of the demo keeps the accounts; ``--clean``
removes them. Screenshots of each step go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub_config.demo_auth import account_exists
from proxy_tunnel import free_port
from tests.commands import Demo
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(os.geteuid() != 0, reason="the demo creates accounts: it needs root"),
]
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CELL = (
    'import os, re; ad = open(os.environ["_CONDOR_JOB_AD"]).read(); '
    'print("OS=" + re.search(r\'^ContainerOS = "(.*)"$\', ad, re.M).group(1), '
    '"THREADS=" + os.environ["OMP_NUM_THREADS"])'
)
# login names of this run's own: another run or a demo on this machine keeps its accounts
FIRST, SECOND = f"physicist{secrets.token_hex(2)}", f"chemist{secrets.token_hex(2)}"
ACCOUNTS = [f"demo-{FIRST}", f"demo-{SECOND}"]


@pytest.fixture
def demo(tmp_path, public_tmp):
    """The README's demo (hub_config.demo, as scripts/demo runs it) in a fresh 0755
    directory (every account enters it) on a free port; stopped and cleaned
    (``--clean``) after the test."""
    for name in ACCOUNTS:
        if account_exists(name):
            pytest.fail(f"an account {name} exists already: the test would remove it")
    d = Demo(
        [sys.executable, "-m", "hub_config.demo"],
        REPO,
        tmp_path / "demo.log",
        demo_dir=public_tmp / "demo",
        port=free_port(),
    )
    try:
        d.start(timeout=180)
        yield d
    finally:
        try:
            d.stop()
        finally:
            if (d.dir / "jupyterhub.log").exists():  # --clean removes it
                shutil.copy(d.dir / "jupyterhub.log", tmp_path / "jupyterhub.log")
            cleaned = d.clean()
            leftovers = [name for name in ACCOUNTS if account_exists(name)]
            assert cleaned.returncode == 0 and not leftovers, (
                cleaned.stdout + cleaned.stderr + f"\nleft: {leftovers}"
            )


def login(page, url: str, name: str) -> None:
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", "condor-demo")
    page.click("#login_submit")


def job_of(demo: Demo, account: str) -> dict[str, str]:
    """The account's notebook job (id, Owner, status), asked as root with the installed condor_q."""
    result = demo.condor(
        "condor_q",
        "-allusers",
        "-af",
        "ClusterId",
        "ProcId",
        "Owner",
        "JobStatus",
        "-constraint",
        f'CondorSpawnerUser == "{account}"',
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert len(rows) == 1, f"jobs of {account}: {result.stdout!r}"
    cluster, proc, owner, status = rows[0]
    return {"id": f"{cluster}.{proc}", "owner": owner, "status": status}


def processes_of(account: str) -> list[tuple[str, str]]:
    """(user, command line) of every process of the account's uid, as ``ps -o user=`` shows them
    (``user:32`` so that long names are not cut to 8 characters)."""
    uid = pwd.getpwnam(account).pw_uid
    out = subprocess.run(
        ["ps", "-ww", "-u", str(uid), "-o", "user:32=,args="],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return [tuple(line.strip().split(None, 1)) for line in out.splitlines() if line.strip()]


def singleuser_owners() -> set[str]:
    """This test's accounts that run a notebook server (jupyterhub-singleuser)."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "user:32=,args="], capture_output=True, text=True, timeout=30
    ).stdout
    users = set()
    for line in out.splitlines():
        user, _, args = line.strip().partition(" ")
        if "jupyterhub-singleuser" in args and user in ACCOUNTS:
            users.add(user)
    return users


# The spawn page's event log, kept in the tab's sessionStorage: it outlives the
# page, which JupyterLab replaces once the server is ready.
RECORD_PROGRESS = """
if (location.pathname.includes("/spawn-pending/")) {
  new MutationObserver(() => {
    const events = [...document.querySelectorAll(".progress-log-event")].map(e => e.textContent);
    sessionStorage.setItem("cs-progress", JSON.stringify(events));
  }).observe(document, {childList: true, subtree: true});
}
"""


def read_terminals_as_text(account: str) -> None:
    """xterm draws on a canvas; its screen-reader mode keeps the screen's text in the page
    too, where the test can read it (a JupyterLab user setting, written as the account:
    root touches nothing in a user's home)."""
    home = Path(pwd.getpwnam(account).pw_dir)
    folder = home / ".jupyter/lab/user-settings/@jupyterlab/terminal-extension"
    as_user = ["sudo", "-n", "-u", account]
    subprocess.run([*as_user, "mkdir", "-p", str(folder)], check=True, timeout=30)
    subprocess.run(
        [*as_user, "tee", str(folder / "plugin.jupyterlab-settings")],
        input='{"screenReaderMode": true}\n',
        text=True,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=30,
    )


def test_two_users_spawn_each_as_their_own_account_run_a_cell_and_stop(demo):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (scripts/bootstrap with CONDORSPAWNER_BROWSER=1)")
    ARTIFACTS.mkdir(exist_ok=True)
    url = demo.url
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        # two users: two browser contexts (own cookies each)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        other = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        for p in (page, other):
            p.set_default_timeout(60_000)
        try:
            # a name that cannot become an account: refused, with the reason, nothing made
            login(other, url, "No_Such-Name")
            expect(other.locator("body")).to_contain_text("1 to 20 lowercase letters and digits")
            assert "/hub/login" in other.url
            other.screenshot(path=str(ARTIFACTS / "0-refused-name.png"))
            assert demo.accounts() == []

            page.context.add_init_script(RECORD_PROGRESS)
            login(page, url, FIRST)
            page.wait_for_selector("#cs-container")
            read_terminals_as_text(ACCOUNTS[0])
            form_text = page.inner_text("form")
            assert "CPUs (1 to 4)" in form_text and "Memory (128MB to 4GB)" in form_text
            # each OS with its description, each limit with what it means
            assert "Debian's stable release" in form_text, form_text
            assert "The most memory your server" in form_text, form_text
            labels = page.locator("#cs-container option").all_inner_texts()
            assert labels == ["Rocky Linux 9", "Debian 12"]
            page.select_option("#cs-container", "Debian12")
            page.fill("#cs-cpus", "2")
            page.screenshot(path=str(ARTIFACTS / "1-form.png"))
            # a mistake: the form comes back saying what is wrong, the other values kept
            page.fill("#cs-memory", "lots")
            page.click("form [type=submit]")
            error = page.locator(".spawn-error-msg")
            expect(error).to_contain_text("memory")
            assert "HTTP 400" not in error.inner_text(), error.inner_text()
            assert page.input_value("#cs-cpus") == "2"
            assert page.input_value("#cs-container") == "Debian12"
            assert page.input_value("#cs-memory") == "lots"
            page.screenshot(path=str(ARTIFACTS / "2-form-error.png"))
            page.fill("#cs-memory", "1GB")
            page.click("form [type=submit]")

            # the form's POST navigates to the progress page: no body while it loads
            page.wait_for_url("**/hub/spawn-pending/**")
            page.wait_for_function(
                "() => document.body && /running on slot1_/.test(document.body.textContent)",
                timeout=120_000,
            )
            page.evaluate("document.getElementById('progress-details').open = true")
            page.screenshot(path=str(ARTIFACTS / "3-progress.png"))

            login(other, url, SECOND)
            other.wait_for_selector("#cs-container")
            other.click("form [type=submit]")

            page.wait_for_url(f"**/user/demo-{FIRST}/lab**", timeout=180_000)
            other.wait_for_url(f"**/user/demo-{SECOND}/lab**", timeout=180_000)
            other.wait_for_selector(".jp-LabShell", timeout=120_000)
            other.screenshot(path=str(ARTIFACTS / "6-second-user.png"))
            other.goto(f"{url}/hub/home")  # one JupyterLab in the browser is enough

            # each login is a real account, recorded for --clean, with a home in /home
            assert sorted(demo.accounts()) == sorted(ACCOUNTS)
            jobs = {}
            for account in ACCOUNTS:
                entry = pwd.getpwnam(account)
                assert entry.pw_uid >= 1000 and entry.pw_dir == f"/home/{account}"
                jobs[account] = job = job_of(demo, account)
                assert job["owner"] == account and job["status"] == "2", job
                # the job's processes (found by its Owner's uid) run as that account
                procs = processes_of(job["owner"])
                commands = " ".join(args for _, args in procs)
                assert "condorspawner.launcher" in commands, procs
                assert "jupyterhub-singleuser" in commands, procs
                assert {user for user, _ in procs} == {account}, procs
            assert jobs[ACCOUNTS[0]]["id"] != jobs[ACCOUNTS[1]]["id"]
            # machine-wide, the demo's notebook servers run as exactly these accounts
            assert singleuser_owners() == set(ACCOUNTS)

            # the progress page told each phase, in order
            told = json.loads(page.evaluate("sessionStorage.getItem('cs-progress')") or "[]")
            phases = [
                "Submitted as HTCondor job",
                "running on slot1_",
                "Opening the tunnel",
                "Tunnel open to job",
                "The notebook server answers through the tunnel",
            ]
            where = [next((i for i, m in enumerate(told) if p in m), None) for p in phases]
            assert None not in where and where == sorted(where), (where, told)

            page.locator(".jp-LauncherCard[title*='Python 3']").first.click()
            # the kernel starts in the job: run the cell once it is idle
            expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle").first).to_be_visible(
                timeout=90_000
            )
            editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
            editor.click()
            page.keyboard.type(CELL)
            page.keyboard.press("Shift+Enter")
            output = page.locator(".jp-OutputArea-output").first
            expect(output).to_contain_text("OS=Debian12 THREADS=2", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "4-jupyterlab.png"))

            # a JupyterLab terminal is the batch environment: condorsub, in the work directory
            page.click("#jp-MainMenu .lm-MenuBar-item:has-text('File')")
            page.hover(".lm-Menu-item:has-text('New')")
            page.click(".lm-Menu-item[data-command='terminal:create-new']")
            screen = page.locator(".jp-Terminal .xterm-accessibility-tree").last
            expect(screen).to_be_attached(timeout=60_000)
            page.locator(".jp-Terminal").last.click()
            page.keyboard.type("condorsub submit --wait /bin/echo hello\n")
            # on a terminal: a live bar, then a table of each job's exit code and files
            expect(screen).to_contain_text("1 done", timeout=120_000)
            expect(screen).to_contain_text(re.compile(r"\d+\.0\s+0\s+job\.\d+\.0\.out"))
            page.keyboard.type("cat condorsub-jobs/*/job.*.out; condorsub q\n")
            expect(screen).to_contain_text("Debian12", timeout=60_000)
            text = screen.inner_text()
            assert "hello" in text and "condorsub-jobs/" in text, text
            assert "not found" not in text, text
            page.screenshot(path=str(ARTIFACTS / "5-terminal.png"))

            page.goto(f"{url}/hub/home")
            page.click("#stop")
            first_job = jobs[ACCOUNTS[0]]["id"]

            def left_queue() -> bool:
                result = demo.condor("condor_q", first_job, "-af", "ClusterId")
                return result.returncode == 0 and not result.stdout.strip()

            wait_until(left_queue, 90, f"job {first_job} is still in the queue after the stop")
            history = demo.condor("condor_history", first_job, "-af", "JobStatus")
            assert history.stdout.split() == ["3"], history  # removed, after its files came back

            def home_offers_start() -> bool:
                page.goto(f"{url}/hub/home")
                return page.locator("#stop").count() == 0

            wait_until(home_offers_start, 60, "the home page still shows the Stop button")
            expect(page.locator("#start")).to_have_text("Start My Server")
            page.screenshot(path=str(ARTIFACTS / "7-stopped.png"))
            # the batch job's output came home with the work directory
            work = Path(pwd.getpwnam(ACCOUNTS[0]).pw_dir) / "jupyter"
            outputs = list(work.glob("condorsub-jobs/*/job.*.out"))
            assert [o.read_text() for o in outputs] == ["hello\n"], list(work.rglob("*"))
            # the other user's job is untouched
            assert job_of(demo, ACCOUNTS[1])["status"] == "2"
        finally:
            page.screenshot(path=str(ARTIFACTS / "last.png"))
            browser.close()

    # Ctrl-C: hub and pool stop, the jobs go, the accounts stay (and the demo says so)
    demo.stop()
    said = demo.log()
    assert "demo: stopping the pool and removing its jobs" in said
    assert f"Kept: the accounts demo-* ({', '.join(ACCOUNTS)})" in said, said[-2000:]
    assert all(account_exists(name) for name in ACCOUNTS)
    wait_until(lambda: not singleuser_owners(), 15, "notebook servers outlived the demo")
    # --clean removes them, their homes and the demo directory
    cleaned = demo.clean()
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    for name in ACCOUNTS:
        assert f"removing the account {name}" in cleaned.stdout
        assert not account_exists(name)
        assert not Path(f"/home/{name}").exists()
    assert not demo.dir.exists()
