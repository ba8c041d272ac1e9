"""What the hub's file helper (run as the user) reads back: bounded, never blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from condorspawner import userfiles


def tail_in_a_child(path, lines: int = 5) -> dict:
    """``userfiles.tail`` in a process of its own, given 10 s (a blocked read fails)."""
    code = (
        "import json, sys\nfrom condorspawner.userfiles import tail\n"
        f"print(json.dumps(tail({str(path)!r}, {lines})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=10, check=True
    )
    return json.loads(done.stdout)


def test_the_last_lines_of_a_file(tmp_path):
    log = tmp_path / "notebook.err"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert userfiles.tail(str(log), 2) == {"text": "line 998\nline 999"}
    assert userfiles.tail(str(tmp_path / "missing"), 2) == {"text": ""}


@pytest.mark.parametrize("kind", ["fifo", "zero", "dir"])
def test_what_is_no_regular_file_is_not_read(tmp_path, kind):
    """A user who links notebook.err to /dev/zero or makes it a FIFO (issue 22.3) gets an
    empty tail, at once, and the hub reads nothing of it."""
    err = tmp_path / "notebook.err"
    if kind == "fifo":
        os.mkfifo(err)
    elif kind == "zero":
        err.symlink_to("/dev/zero")
    else:
        err.mkdir()
    assert tail_in_a_child(err) == {"text": ""}


def test_a_huge_file_is_read_only_at_its_end(tmp_path):
    big = tmp_path / "notebook.err"
    with open(big, "wb") as f:
        f.truncate(8 << 30)  # 8 GiB, sparse
        f.seek(0, os.SEEK_END)
        f.write(b"\nthe end\n")
    assert tail_in_a_child(big, 1) == {"text": "the end"}
