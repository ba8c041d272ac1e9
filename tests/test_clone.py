"""A clone is the whole project: the README's test command in a fresh clone with nothing
beside it (no sibling directory of shared material) runs the tests that read the HTCondor
recordings, and they pass."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECORDING_TESTS = (
    "tests/test_condor.py",
    "tests/test_quoting.py",
    "tests/test_v2syntax.py",
    "tests/test_localpool.py",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="localpool's jobs need namespaces: root"),
]


def test_the_readme_test_command_in_a_clone_with_nothing_beside_it(public_tmp):
    clone = public_tmp / "alone" / "condorspawner"
    clone.parent.mkdir()
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    assert sorted(p.name for p in clone.parent.iterdir()) == ["condorspawner"]
    assert "./scripts/test" in (clone / "README.md").read_text()
    shared = subprocess.run(
        ["grep", "-rlnF", "..".__add__("/shared"), "--exclude-dir=.git", "."],
        cwd=clone,
        capture_output=True,
        text=True,
        check=False,
    )
    # only the words saying how to run the real HTCondor tier name it (and CI's script,
    # which runs that tier with it beside the checkout); no code reads it
    allowed = {"./README.md", "./.ci/run", "./tests/realpool.py"}
    assert set(shared.stdout.split()) <= allowed, shared.stdout
    env = {k: v for k, v in os.environ.items() if k != "CONDORSPAWNER_HTCONDOR"}

    def in_clone(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), cwd=clone, env=env, capture_output=True, text=True, timeout=timeout
        )

    result = in_clone(
        "./scripts/test", "-q", "-p", "no:cacheprovider", *RECORDING_TESTS, timeout=1200
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
    # the real HTCondor tier, asked for without an HTCondor: skipped, saying how to run it
    real = in_clone(
        ".venv/bin/python",
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "-m",
        "htcondor",
        "tests/test_localpool_users.py",
        timeout=300,
    )
    assert real.returncode == 0, real.stdout[-3000:]
    assert "CONDORSPAWNER_HTCONDOR=" in real.stdout and " skipped" in real.stdout, real.stdout
    assert " passed" not in real.stdout.splitlines()[-1], real.stdout
