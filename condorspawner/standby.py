"""A running server's local port answers for it while its schedd does not.

When JupyterHub starts it checks every server that ``poll()`` calls running with
an HTTP request (``app.py`` ``check_spawner`` -> ``User._wait_up``) and stops
each one that gives no answer below 500 within ``http_timeout``. A tunnel needs
the job's schedd (``condor_ssh_to_job``), so a hub restarted while a schedd does
not answer would end every session on it although the jobs run on. Until the
schedd answers and the tunnel takes the port back, this stand-in answers every
request with ``424 Failed Dependency`` and a page saying what goes on (no
secret: job id and schedd name, which ``condor_q`` shows to anyone).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging

log = logging.getLogger(__name__)

RETRY_SECONDS = 15
READ_TIMEOUT = 10.0  # a client that sends no request head in time is dropped


def page(job_id: str, schedd: str | None) -> bytes:
    """The whole HTTP response the stand-in gives to every request."""
    where = f"its access point ({schedd})" if schedd else "its access point (the schedd)"
    text = (
        f"Your server is still running in HTCondor job {job_id}, but {where} does not "
        "answer, so the hub cannot reach it now. Nothing is lost: the hub connects again "
        f"as soon as the schedd answers. This page tries again every {RETRY_SECONDS} s."
    )
    body = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Waiting for the schedd"
        f"</title></head><body><p>{html.escape(text)}</p></body></html>\n"
    ).encode()
    head = (
        "HTTP/1.1 424 Failed Dependency\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Refresh: {RETRY_SECONDS}\r\n"
        f"Retry-After: {RETRY_SECONDS}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class Standby:
    """The stand-in on 127.0.0.1:``port`` (see the module's docstring)."""

    def __init__(self, port: int, job_id: str, schedd: str | None) -> None:
        self.port = port
        self.response = page(job_id, schedd)
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def serving(self) -> bool:
        return self.server is not None

    async def start(self) -> bool:
        """Listen (port 0: any free one, then ``port`` says which); False when taken."""
        if self.server is None:
            try:
                self.server = await asyncio.start_server(
                    self._answer, "127.0.0.1", self.port, reuse_address=True
                )
            except OSError as err:
                log.warning("no stand-in on 127.0.0.1:%s: %s", self.port, err)
                return False
            self.port = self.server.sockets[0].getsockname()[1]
        return True

    async def close(self) -> None:
        """Give the port back (the tunnel takes it next), keeping nothing of the stand-in.

        Its clients are dropped, not waited for: one a local user holds open would
        otherwise keep the page going, and on Python 3.12+ ``wait_closed`` would wait for
        it while the port is free for anyone to take before the tunnel does."""
        if self.server is not None:
            server, self.server = self.server, None
            server.close()  # the listening socket: the port is free from here on
            for writer in list(self._clients):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            with contextlib.suppress(TimeoutError, asyncio.LimitOverrunError, ValueError):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            writer.write(self.response)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
