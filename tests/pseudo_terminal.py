"""A program on a pseudo-terminal of its own, as a user at a terminal runs it: what it
wrote so far, keys typed into it, bounded waits for what it prints.

Shared by the tests that drive interactive shells and full-screen views
(``condor_submit -interactive``, ``condorsub shell``, ``condorsub q``).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

from tests.waiting import wait_until

PROMPT_ENDS = (b"$", b"#")


class PseudoTerminal:
    """``argv`` started on a new pseudo-terminal (stdout and stderr, and stdin unless
    ``keyboard`` is False), in a session of its own."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        size: tuple[int, int] | None = None,
        keyboard: bool = True,
    ) -> None:
        self.master, slave = pty.openpty()
        if size:
            rows, columns = size
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            argv,
            stdin=slave if keyboard else subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""
        self.ended = False  # the other side closed: the program has ended
        self.last_output = time.monotonic()

    def __enter__(self) -> PseudoTerminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, wait: float = 0.2) -> bytes:
        """What the program wrote within ``wait`` seconds (added to ``seen``)."""
        if self.ended or not select.select([self.master], [], [], wait)[0]:
            return b""
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO once the last writer closed the terminal
            chunk = b""
        if not chunk:
            self.ended = True
        self.seen += chunk
        self.last_output = time.monotonic() if chunk else self.last_output
        return chunk

    def read_until(self, done: Callable[[bytes], object], timeout: float, what: str) -> str:
        """Everything seen once ``done(seen)`` holds (bounded); fails with what was seen."""

        def reached() -> bool:
            self.read()
            if done(self.seen):
                return True
            if self.ended:
                raise AssertionError(f"ended before {what}; it showed {self.text()!r}")
            return False

        wait_until(reached, timeout, lambda: f"{what}; the terminal showed {self.text()!r}", 0)
        return self.text()

    def read_to_end(self, timeout: float) -> str:
        return self.read_until(lambda _: self.ended, timeout, "the program ends")

    def at_prompt(self, quiet: float = 0.5) -> bool:
        """A shell prompt is the last thing shown and nothing came for ``quiet`` seconds."""
        settled = time.monotonic() - self.last_output > quiet
        return settled and self.seen.rstrip().endswith(PROMPT_ENDS)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def text(self) -> str:
        return self.seen.decode(errors="replace")

    def exit_code(self, timeout: float = 20) -> int:
        """The program's exit code once it has ended (bounded)."""
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        """Kill the program if it still runs and let go of the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
