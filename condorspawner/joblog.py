"""What a job's own event log (``log = ...`` in its submit directory) says about its end.

When neither the queue nor the history knows a job (a history that rotated,
a schedd that lost its queue), the event log the schedd wrote next to the
job's files on the hub still does: ``005`` terminated, ``009`` aborted.
"""

from __future__ import annotations

import re

ENDED = {"005": "terminated", "009": "aborted"}
_EVENT_RE = re.compile(r"^(\d{3}) \((\d+)\.(\d+)\.\d+\) ", re.MULTILINE)


def ended_in_log(text: str, job_id: str) -> str | None:
    """'terminated' or 'aborted' if the log records this job's end, else None."""
    cluster, _, proc = job_id.partition(".")
    for match in _EVENT_RE.finditer(text):
        code, c, p = match.groups()
        if code in ENDED and int(c) == int(cluster) and int(p) == int(proc or 0):
            return ENDED[code]
    return None
