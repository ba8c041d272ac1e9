"""``condor_chirp`` inside a job: the chirp protocol spoken to the job's starter (stdlib only).

The starter's ``.chirp.config`` (``$_CONDOR_CHIRP_CONFIG``) holds ``host port
cookie``; the same lines ``htchirp`` sends go over one TCP connection.
Supported: ``set_job_attr[_delayed] NAME VALUE``, ``get_job_attr[_delayed]
NAME``, ``ulog TEXT``.
"""

from __future__ import annotations

import os
import socket
import sys
import time

USAGE = "usage: condor_chirp set_job_attr NAME VALUE | get_job_attr NAME | ulog TEXT\n"
ARITY = {
    "set_job_attr": 2,
    "set_job_attr_delayed": 2,
    "get_job_attr": 1,
    "get_job_attr_delayed": 1,
    "ulog": 1,
}


def quote(word: str) -> str:
    """Chirp's escaping: a backslash before space, tab, newline, CR and backslash."""
    return "".join("\\" + c if c in " \t\n\r\\" else c for c in word)


def _config() -> tuple[str, int, str]:
    path = os.environ.get("_CONDOR_CHIRP_CONFIG")
    if not path:
        raise OSError("no _CONDOR_CHIRP_CONFIG (is want_io_proxy set for this job?)")
    with open(path) as f:
        host, port, cookie = f.read().split()[:3]
    return host, int(port), cookie


def _status(reader) -> int:
    line = reader.readline()
    if not line:
        raise OSError("the chirp server closed the connection")
    return int(line.strip())


def call(command: str, args: list[str]) -> str | None:
    """Run one chirp command; the value for get_job_attr. Raises OSError on failure."""
    host, port, cookie = _config()
    with socket.create_connection((host, port), timeout=10) as sock:
        reader = sock.makefile("rb")
        sock.sendall(f"cookie {quote(cookie)}\n".encode())
        if _status(reader) != 0:
            raise OSError("the chirp server refused the cookie")
        sock.sendall((" ".join([command, *(quote(a) for a in args)]) + "\n").encode())
        status = _status(reader)
        if status < 0:
            raise OSError(f"chirp {command} failed: error {status}")
        if command.startswith("get_job_attr"):
            return reader.read(status).decode()
    return None


def main(argv: list[str]) -> int:
    if not argv or ARITY.get(argv[0]) != len(argv) - 1:
        sys.stderr.write(USAGE)
        return 1
    for attempt in range(3):
        try:
            value = call(argv[0], argv[1:])
        except (OSError, ValueError) as err:
            if attempt == 2:
                sys.stderr.write(f"condor_chirp: {err}\n")
                return 1
            time.sleep(0.2)
            continue
        if value is not None:
            sys.stdout.write(value + "\n")
        return 0
    return 1
