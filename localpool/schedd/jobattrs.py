"""A user setting one attribute of a queued job: ``condor_chirp`` from the job, ``condor_qedit``.

Both go through here, as both end in the schedd's SetAttribute in HTCondor:
the name must be a ClassAd attribute name that users may set
(:func:`localpool.security.authz.protection`), the value one whole ClassAd expression
on one line, and the value is stored as the queue stores values
(:func:`localpool.ads.parse_value`: literals as Python values, anything else
as an :class:`~localpool.ads.Expr`). Whose job it is, is the caller's
business (:func:`localpool.security.authz.may_modify`).
"""

from __future__ import annotations

import re
from typing import Any

import classad2

from localpool.ads import Ad, parse_value
from localpool.security.authz import protection

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # HTCondor's IsValidAttrName


class Refused(ValueError):
    """Not set, and why: ``"name"``, ``"value"``, ``"immutable"`` or ``"secure"``."""

    def __init__(self, reason: str, name: str) -> None:
        super().__init__(f"{reason}: {name}")
        self.reason = reason
        self.name = name


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def check_name(name: str) -> None:
    """Raise :class:`Refused` unless ``name`` is an attribute a user may set."""
    if not valid_name(name):
        raise Refused("name", name)
    why = protection(name)
    if why:
        raise Refused(why, name)


def parse(name: str, text: str) -> Any:
    """The value to store for ``name = text``; :class:`Refused` ("value") if it is none."""
    # HTCondor's IsValidAttrValue: no line breaks (they would also break event log lines)
    if not text.strip() or "\n" in text or "\r" in text:
        raise Refused("value", name)
    try:
        classad2.ExprTree(text)
        return parse_value(text)
    except Exception:
        raise Refused("value", name) from None


def value_for(name: str, text: str) -> Any:
    """:func:`check_name` and :func:`parse` in one."""
    check_name(name)
    return parse(name, text)


def store(ad: Ad, name: str, value: Any) -> None:
    """Set the attribute; names are case-insensitive, an existing one keeps its spelling."""
    low = name.lower()
    key = next((k for k in ad if k.lower() == low), name)
    ad[key] = value
