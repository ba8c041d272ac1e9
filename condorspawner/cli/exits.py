"""condorsub's exit codes and the error that carries one to ``main``."""

from __future__ import annotations

USAGE, FAILED = 2, 1


class CliError(Exception):
    """A message for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code
