"""The tests' one bounded wait: ask until an answer is true, fail saying what never came.

Every poll in the tests and benchmarks goes through here, so each is bounded in time,
and a slow machine gets more tries instead of a different answer.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


What = str | Callable[[], str]  # a callable is asked only on failure (a log's tail)


def _never(timeout: float, what: What, value: object) -> AssertionError:
    seen = f"; last answer: {value!r}" if value not in (None, False) else ""
    said = what() if callable(what) else what
    return AssertionError(f"not within {timeout} s: {said}{seen}")


def wait_until(predicate: Callable[[], T], timeout: float, what: What, every: float = 0.2) -> T:
    """``predicate()``'s first true answer, asked every ``every`` seconds (at least once,
    and once at or after the deadline); AssertionError naming ``what`` if none came in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _never(timeout, what, value)
        time.sleep(every)


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]], timeout: float, what: What, every: float = 0.02
) -> T:
    """``wait_until`` for a test on the event loop: the loop runs while it waits, and
    ``predicate`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _never(timeout, what, value)
        await asyncio.sleep(every)


def seconds_until(
    predicate: Callable[[], object], timeout: float, what: What, every: float = 0.1
) -> float:
    """How long ``predicate`` took to answer true (bounded like ``wait_until``)."""
    started = time.monotonic()
    wait_until(predicate, timeout, what, every)
    return time.monotonic() - started
