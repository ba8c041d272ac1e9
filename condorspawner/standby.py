"""A running server's local port answers for it while its schedd or its tunnel does not.

When JupyterHub starts it checks every server that ``poll()`` calls running with
an HTTP request (``app.py`` ``check_spawner`` -> ``User._wait_up``) and stops
each one that gives no answer below 500 within ``http_timeout``. A tunnel needs
the job's schedd (``condor_ssh_to_job``), so a hub restarted while a schedd does
not answer would end every session on it although the jobs run on. Until the
schedd answers and a tunnel is there, the standby page answers every request on
the session's held port (the relay's fallback, :class:`~proxy_tunnel.SocketRelay`)
with ``424 Failed Dependency`` and a page saying what goes on (no secret: job
id and schedd name, which ``condor_q`` shows to anyone). The same page, worded
for it, stands in while the schedd answers but no tunnel reaches the job (a CCB
hiccup, a slow sshd in the job): the job is kept, not ended for a late tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from typing import Any

RETRY_SECONDS = 15
READ_TIMEOUT = 10.0  # a client that sends no request head in time is dropped


def page(job_id: str, schedd: str | None, tunnel: bool = False) -> bytes:
    """The whole HTTP response the standby page gives to every request: the schedd does not
    answer, or (``tunnel``) it does but no tunnel reaches the job yet."""
    where = f"its access point ({schedd})" if schedd else "its access point (the schedd)"
    if tunnel:
        what = (
            f"Your server is still running in HTCondor job {job_id}; the hub's connection "
            "to it (condor_ssh_to_job) is being re-established. Nothing is lost: the hub "
            "keeps trying."
        )
        title = "Reconnecting to your server"
    else:
        what = (
            f"Your server is still running in HTCondor job {job_id}, but {where} does not "
            "answer, so the hub cannot reach it now. Nothing is lost: the hub connects "
            "again as soon as the schedd answers."
        )
        title = "Waiting for the schedd"
    text = f"{what} This page tries again every {RETRY_SECONDS} s."
    body = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}"
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
    """The standby page's answer (see the module's docstring), for a relay's ``fallback``."""

    def __init__(self, job_id: str, schedd: str | None, tunnel: bool = False) -> None:
        self.tunnel = tunnel
        self.response = page(job_id, schedd, tunnel)
        self._clients: set[asyncio.StreamWriter] = set()

    async def close(self) -> None:
        """Stand down: its clients are dropped, not waited for (one a local user holds
        open would otherwise keep the page going after the tunnel is back)."""
        for writer in list(self._clients):
            writer.transport.abort()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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


class StandbyPort:
    """The page a session's held port gives while no tunnel serves it (one at a time)."""

    def __init__(self) -> None:
        self.page: Standby | None = None
        self.lost_at: float | None = None  # monotonic: since when no tunnel reaches the job

    def lost_for(self) -> float:
        """Seconds since the tunnel was lost (the clock starts at the first call)."""
        now = time.monotonic()
        if self.lost_at is None:
            self.lost_at = now
        return now - self.lost_at

    def found(self) -> None:
        self.lost_at = None

    async def show(self, attachment: Any, standby: Standby) -> int:
        """The session's port gives ``standby``'s page until a tunnel is there; returns
        the port. It is held from here on (``Attachment.hold``); when someone else took
        it while no hub ran, any free one (the caller moves the route): never leave the
        user's traffic to whoever took it."""
        await self.hide(attachment)
        port = await attachment.hold()
        assert attachment.relay is not None
        attachment.relay.fallback = standby.answer
        self.page = standby
        return port

    async def hide(self, attachment: Any | None) -> None:
        if self.page is not None:
            page, self.page = self.page, None
            if attachment is not None and attachment.relay is not None:
                attachment.relay.fallback = None
            await page.close()
