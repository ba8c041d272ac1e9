"""The demo in a real browser: headless Debian Chromium driven by Playwright.

Log in, see the form with the site's limits and container labels, choose
Debian 12 and 2 CPUs, watch the progress page (job id, "running on"), land
in JupyterLab, run a cell that prints the container OS and OMP_NUM_THREADS,
stop the server from the hub's home page. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from proxy_tunnel import free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(os.geteuid() != 0, reason="the demo's jobs need network namespaces"),
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CELL = (
    'import os, re; ad = open(os.environ["_CONDOR_JOB_AD"]).read(); '
    'print("OS=" + re.search(r\'^ContainerOS = "(.*)"$\', ad, re.M).group(1), '
    '"THREADS=" + os.environ["OMP_NUM_THREADS"])'
)


@pytest.fixture
def demo(tmp_path):
    """The README's demo (hub_config.demo) on a free port, stopped after the test."""
    port = free_port()
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub_config.demo",
            "--port",
            str(port),
            "--dir",
            str(tmp_path / "demo"),
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the demo exited: {(tmp_path / 'demo.log').read_text()}")
        try:
            urllib.request.urlopen(f"{url}/hub/login", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    log.close()


def test_login_choose_spawn_run_a_cell_and_stop(demo):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (scripts/bootstrap with CONDORSPAWNER_BROWSER=1)")
    ARTIFACTS.mkdir(exist_ok=True)
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
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{demo}/hub/login")
            page.fill("#username_input", "physicist")
            page.fill("#password_input", "condor-demo")
            page.click("#login_submit")

            page.wait_for_selector("#cs-container")
            form_text = page.inner_text("form")
            assert "CPUs (1 to 4)" in form_text and "Memory (128MB to 4GB)" in form_text
            labels = page.locator("#cs-container option").all_inner_texts()
            assert labels == ["Rocky Linux 9", "Debian 12"]
            page.select_option("#cs-container", "Debian12")
            page.fill("#cs-cpus", "2")
            page.screenshot(path=str(ARTIFACTS / "1-form.png"))
            page.click("form [type=submit]")

            page.wait_for_function(
                "() => /running on slot1_/.test(document.body.textContent)", timeout=60_000
            )
            progress = page.content()
            assert "Submitted as HTCondor job" in progress
            page.screenshot(path=str(ARTIFACTS / "2-progress.png"))

            page.wait_for_url("**/user/physicist/lab**", timeout=120_000)
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
            page.screenshot(path=str(ARTIFACTS / "3-jupyterlab.png"))

            page.goto(f"{demo}/hub/home")
            page.click("#stop")
            expect(page.locator("#start")).to_be_visible(timeout=90_000)
            page.screenshot(path=str(ARTIFACTS / "4-stopped.png"))
        finally:
            page.screenshot(path=str(ARTIFACTS / "last.png"))
            browser.close()
