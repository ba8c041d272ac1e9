"""Sizes and durations the way users write them, in the units HTCondor uses.

Memory and disk sizes are binary, as in HTCondor (``request_memory = 4G`` is
4096 MB); a bare number means megabytes. Durations take ``s``, ``m``, ``h``
and ``d`` suffixes, combinable (``1h30m``); a bare number means seconds.
"""

from __future__ import annotations

import math
import re

_SIZE_FACTORS_MB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*\Z", re.IGNORECASE)

_DURATION_FACTORS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd])", re.IGNORECASE)
_DURATION_FULL_RE = re.compile(r"^\s*(?:[0-9]+(?:\.[0-9]+)?\s*[smhd]\s*)+\Z", re.IGNORECASE)


MAX_TEXT = 64  # longer "numbers" are mistakes, and int() of thousands of digits is slow


class UnitError(ValueError):
    """A size or duration that does not parse; the message (which the caller
    prefixes with the field and value) says what would."""


def parse_size_mb(value: str | int) -> int:
    """Megabytes from ``4GB``, ``4G``, ``512MB``, ``1.5GiB`` or ``4096`` (MB).

    Fractions round up to the next whole megabyte, as a request should.
    """
    if isinstance(value, bool):
        raise UnitError("is not a size")
    if isinstance(value, int):
        if value < 0:
            raise UnitError("is negative")
        return value
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise UnitError("is not a size")
    match = _SIZE_RE.match(value)
    if not match:
        raise UnitError("is not a size (write it like 4GB, 512MB, 1.5G or 4096 for MB)")
    number, unit = match.groups()
    factor = _SIZE_FACTORS_MB[unit.lower()] if unit else 1
    if not unit and value.strip().lower().endswith("b"):
        factor = 1 / (1024 * 1024)  # plain bytes
    return math.ceil(float(number) * factor)


def parse_duration_s(value: str | int) -> int:
    """Seconds from ``90m``, ``2h``, ``1d``, ``1h30m`` or ``3600`` (seconds)."""
    if isinstance(value, bool):
        raise UnitError("is not a duration")
    if isinstance(value, int):
        if value < 0:
            raise UnitError("is negative")
        return value
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise UnitError("is not a duration")
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    if not _DURATION_FULL_RE.match(text):
        raise UnitError("is not a duration (write it like 90m, 2h, 1d, 1h30m or 3600 for seconds)")
    total = sum(float(n) * _DURATION_FACTORS[u.lower()] for n, u in _DURATION_PART_RE.findall(text))
    return math.ceil(total)


def format_size_mb(mb: int) -> str:
    """The shortest exact way to write a size: ``4GB``, ``1536MB``."""
    for unit, factor in (("TB", 1024 * 1024), ("GB", 1024)):
        if mb and mb % factor == 0:
            return f"{mb // factor}{unit}"
    return f"{mb}MB"


def format_duration_s(seconds: int) -> str:
    """A duration written back the way a user would: ``1d``, ``2h``, ``1h30m``, ``45s``."""
    if seconds == 0:
        return "0s"
    parts = []
    rest = seconds
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, factor)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
