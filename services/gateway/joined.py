"""uvicorn's HTTP protocol with the writes of one event-loop step joined into one send.

An ASGI response is two messages, and uvicorn's httptools protocol writes each
at once: the status line and headers in one `send()` system call, the body in
another. The sender then reads two TCP segments for every answer. At one
alert per request that second system call, on both sides, is a measurable
share of the work: interleaved ingest runs took 12% more requests/s with the
writes joined (3,220 against 2,878 alerts/s at batch 1, median of 3 each, and
the load generator spent 0.33 core instead of 0.37 for them).

`JoinedWritesProtocol` gives uvicorn a transport whose `write` collects what
is written during the current loop step and sends it all at the start of the
next one (`call_soon`), in order. Everything else is the real transport's.
`close` sends what is pending first. Writes after the connection closed are
dropped, as the real transport drops them.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class JoinedWrites:
    """A transport proxy: writes of one loop step leave in one `write` to the transport."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue data; the first write of a step schedules the send."""
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Send what was queued, in one write (nothing when the transport is closing)."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Send what is queued, then close (uvicorn closes right after a last write)."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `JoinedWrites` transport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        joined = JoinedWrites(cast(asyncio.Transport, transport), asyncio.get_running_loop())
        super().connection_made(cast(asyncio.Transport, joined))
