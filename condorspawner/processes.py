"""Waiting on a child process without ever leaving it behind.

A child that is given up on (too slow, or its caller cancelled) is killed and
reaped before the error goes on: an unreaped asyncio subprocess transport
outlives its event loop and fails when collected, and a forgotten ``condor_q`` or
``sudo`` helper would keep running on the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

Process = asyncio.subprocess.Process


def kill_group(proc: Process) -> None:
    """SIGKILL the child's process group (it was started with ``start_new_session``).

    A child that leads no group of its own is killed alone: else nothing would end it
    and the wait for it would last as long as its work."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        kill_child(proc)
    except PermissionError:
        pass


def kill_child(proc: Process) -> None:
    """SIGKILL the child alone."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


async def communicate_within(
    proc: Process,
    data: bytes | None,
    limit: float,
    kill: Callable[[Process], None] = kill_group,
) -> tuple[bytes, bytes]:
    """``proc.communicate(data)`` within ``limit`` seconds.

    Raises ``TimeoutError`` (or passes a cancellation on) only after the child
    has been killed with ``kill`` and reaped.
    """
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), limit)
    except (TimeoutError, asyncio.CancelledError):
        kill(proc)
        await proc.wait()
        raise
    return out or b"", err or b""
