"""A job's periodic policy, as the schedd evaluates it.

``periodic_remove``, ``periodic_hold`` (with ``periodic_hold_reason``) and
``periodic_release`` in the job's ad, and ``allowed_execute_duration``.
The pool process applies it every ``periodic_seconds``.
"""

from __future__ import annotations

from typing import Any

from localpool.ads import Ad, Expr, evaluate, is_true
from localpool.schedd.jobstate import (
    HELD,
    HOLD_DURATION,
    HOLD_PERIODIC,
    IDLE,
    RUNNING,
    duration,
    request_hold,
    request_release,
    request_remove,
)


def apply(ad: Ad, now: float) -> bool:
    """One periodic look at a job; True if it must leave the queue now (removed, not running)."""
    status = ad["JobStatus"]
    if status in (IDLE, RUNNING):
        for attr, action in (("PeriodicRemove", "remove"), ("PeriodicHold", "hold")):
            expr = ad.get(attr)
            if expr is not None and _evaluates_true(expr, ad):
                reason = f"The job attribute {attr} expression '{expr}' evaluated to TRUE"
                if action == "remove":
                    request_remove(ad, reason, now)
                    return "LocalpoolStarterPid" not in ad
                request_hold(ad, _hold_reason(ad, reason), HOLD_PERIODIC, now)
                return False
    if status == RUNNING and "AllowedExecuteDuration" in ad:
        started = ad.get("JobCurrentStartExecutingDate", ad.get("JobCurrentStartDate", now))
        limit = ad["AllowedExecuteDuration"]
        if isinstance(limit, int) and now - started > limit:
            request_hold(
                ad,
                f"The job exceeded allowed execute duration of {duration(limit)}",
                HOLD_DURATION,
                now,
            )
    if status == HELD and "PeriodicRelease" in ad and _evaluates_true(ad["PeriodicRelease"], ad):
        request_release(
            ad,
            "The job attribute PeriodicRelease expression "
            f"'{ad['PeriodicRelease']}' evaluated to TRUE",
            now,
        )
    return False


def _hold_reason(ad: Ad, default: str) -> str:
    """``periodic_hold_reason`` evaluated in the job's ad, else HTCondor's own text."""
    expr = ad.get("PeriodicHoldReason")
    try:
        value = evaluate(str(expr), ad) if isinstance(expr, Expr) else expr
    except Exception:
        return default
    return value if isinstance(value, str) and value else default


def _evaluates_true(expr: Any, ad: Ad) -> bool:
    try:
        value = evaluate(expr, ad) if isinstance(expr, Expr) else expr
    except Exception:
        return False
    return is_true(value)
