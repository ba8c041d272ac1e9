"""Chirp: how a job reads and updates its own ad while it runs.

The starter serves the chirp protocol on 127.0.0.1 inside the job's network
namespace and writes ``.chirp.config`` (``host port cookie``), as HTCondor's
starter does with ``want_io_proxy = true``; the ``htchirp`` client and our
``condor_chirp`` (``localpool.clients.chirpclient``) both speak to it. Supported:
``cookie``, ``set_job_attr[_delayed]``, ``get_job_attr[_delayed]``, ``ulog``.
The job may not set the attributes the schedd keeps for itself (the owner,
the job's id, localpool's bookkeeping): those answer "invalid request"
(``localpool.schedd.jobattrs``, the path ``condor_qedit`` takes too).
"""

from __future__ import annotations

import secrets
import socketserver
import threading

from localpool.ads import literal
from localpool.schedd import eventlog, jobattrs
from localpool.schedd.store import Store

OK, NOT_AUTHENTICATED, DOESNT_EXIST, INVALID_REQUEST = 0, -1, -3, -8
MAX_LINE = 5 * 1024


def unquote(text: str) -> str:
    """Undo chirp's backslash escaping of space, tab, newline, CR and backslash."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def split_command(line: str) -> list[str]:
    """Words of a chirp command line: separated by unescaped spaces."""
    words, current, i = [], [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            current.append(line[i : i + 2])
            i += 2
            continue
        if c == " ":
            words.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    words.append("".join(current))
    return [unquote(w) for w in words if w != ""]


class ChirpServer:
    """A chirp server for one job, in a background thread."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.cookie = secrets.token_hex(16)
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                server.serve(self.rfile, self.wfile)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve(self, rfile, wfile) -> None:
        authenticated = False
        while True:
            raw = rfile.readline(MAX_LINE)
            if not raw:
                return
            words = split_command(raw.decode(errors="replace").rstrip("\n"))
            if not words:
                continue
            command, args = words[0], words[1:]
            if command == "cookie":
                authenticated = len(args) == 1 and secrets.compare_digest(args[0], self.cookie)
                wfile.write(f"{OK if authenticated else NOT_AUTHENTICATED}\n".encode())
            elif not authenticated:
                wfile.write(f"{NOT_AUTHENTICATED}\n".encode())
            elif command in ("set_job_attr", "set_job_attr_delayed") and len(args) == 2:
                wfile.write(f"{self.set_attr(args[0], args[1])}\n".encode())
            elif command in ("get_job_attr", "get_job_attr_delayed") and len(args) == 1:
                value = self.get_attr(args[0])
                if value is None:
                    wfile.write(f"{DOESNT_EXIST}\n".encode())
                else:
                    data = value.encode()
                    wfile.write(f"{len(data)}\n".encode() + data)
            elif command == "ulog" and args:
                with self.store.update() as queue:
                    ad = queue.jobs.get(self.job_id)
                if ad is not None:
                    eventlog.write(ad, 8, " ".join(args))
                wfile.write(f"{OK}\n".encode())
            else:
                wfile.write(f"{INVALID_REQUEST}\n".encode())
            wfile.flush()

    def set_attr(self, name: str, text: str) -> int:
        try:
            value = jobattrs.value_for(name, text)
        except jobattrs.Refused:
            return INVALID_REQUEST
        with self.store.update() as queue:
            ad = queue.jobs.get(self.job_id)
            if ad is None:
                return DOESNT_EXIST
            jobattrs.store(ad, name, value)
        eventlog.attribute_set(ad, name, literal(value))
        return OK

    def get_attr(self, name: str) -> str | None:
        ad = self.store.read().jobs.get(self.job_id, {})
        lower = {k.lower(): v for k, v in ad.items()}
        if name.lower() not in lower:
            return None
        return literal(lower[name.lower()])
