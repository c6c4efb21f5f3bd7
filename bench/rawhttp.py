"""A minimal keep-alive HTTP/1.1 POST client for the closed-loop ingest benchmark.

httpx costs the load generator about a millisecond of CPU per request on this
kind of machine, so at one alert per request the sender, not the receiver, was
the bottleneck (it ran at one core while Alertmanager idled at 0.2). This is
what `wrk` does: write a prepared request on a kept-alive connection, read the
status line, headers and body (Content-Length or chunked). Only for loopback
benchmarks of our own receivers; the product's HTTP clients use httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit


class HttpError(Exception):
    """The exchange failed at the transport level (connection, protocol, timeout)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class RawConnection:
    """One kept-alive connection; reconnects after an error or `Connection: close`."""

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"rawhttp only speaks plain http to a host: {url}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}"
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._answered = False
        self.last_used = time.monotonic()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST body; (status, response body). Raises HttpError.

        A kept-alive connection the server closed while it sat idle fails
        before any byte of an answer arrives: the request was never read, so it
        is sent again once on a new connection, as HTTP clients do (RFC 9112
        9.3.1), rather than counted as an error of the receiver.
        """
        reused = self._writer is not None
        try:
            try:
                return await asyncio.wait_for(self._exchange(body), self.timeout_s)
            except (OSError, asyncio.IncompleteReadError):
                if not reused or self._answered:
                    raise
                await self.close()
                return await asyncio.wait_for(self._exchange(body), self.timeout_s)
        except TimeoutError:
            await self.close()
            raise HttpError("timeout") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            await self.close()
            raise HttpError(type(exc).__name__) from exc

    async def _exchange(self, body: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        self._answered = False
        writer.write(f"{self._head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        try:
            status_line = await reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError as exc:
            self._answered = bool(exc.partial)  # part of a status line is an answer begun
            raise
        self._answered = True
        self.last_used = time.monotonic()
        status = int(status_line.split(b" ", 2)[1])
        raw_headers = await reader.readuntil(b"\r\n\r\n")
        headers = {}
        for line in raw_headers.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower()] = value.strip().lower()
        if headers.get(b"transfer-encoding") == b"chunked":
            payload = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                payload += chunk[:-2]
            content = bytes(payload)
        else:
            content = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection") == b"close":
            await self.close()
        return status, content

    async def close(self) -> None:
        """Close the connection (the next post reconnects)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class RawPool:
    """Up to `size` kept-alive connections to one URL, reused most-recent first.

    A connection idle for `max_idle_s` is closed instead of reused: servers
    close idle keep-alive connections (uvicorn after 5 s), and most-recent-first
    reuse leaves the pool's bottom connections idle for long stretches.
    """

    max_idle_s = 4.0

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float, size: int) -> None:
        self.url = url
        self.headers = headers
        self.timeout_s = timeout_s
        self._free: list[RawConnection] = []
        self._slots = asyncio.Semaphore(size)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST body on a free connection (a new one when none is free)."""
        async with self._slots:
            connection = (self._free.pop() if self._free
                          else RawConnection(self.url, self.headers, self.timeout_s))
            if time.monotonic() - connection.last_used > self.max_idle_s:
                await connection.close()
            try:
                return await connection.post(body)
            finally:
                self._free.append(connection)

    async def close(self) -> None:
        """Close every idle connection."""
        while self._free:
            await self._free.pop().close()
