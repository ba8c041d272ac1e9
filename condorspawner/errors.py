"""The spawner's own errors: a spawn that cannot succeed, with a message for the user."""

from __future__ import annotations

from typing import Any


class SpawnError(RuntimeError):
    """A spawn that cannot succeed; the message is shown to the user."""


class JobFailed(SpawnError):
    """The job cannot serve a notebook (held, ended, queued too long, unreachable); the
    message says why. ``ad`` is the job's last ad, when there is one; ``ended``: the job
    left the queue by itself (then its ``ExitCode`` is the server's)."""

    def __init__(self, message: str, ad: dict[str, Any] | None = None, ended: bool = False) -> None:
        super().__init__(message)
        self.ad = ad or {}
        self.ended = ended
