"""The gateway's HTTP protocol sends each response in one write, over a real socket.

uvicorn's own httptools protocol writes a response's head and body separately
(two system calls, two TCP segments); `JoinedWritesProtocol` joins the writes
of one loop step. These tests run a real uvicorn server on loopback with the
protocol, count the writes that reach the real transport, and read the bytes
a raw client gets: keep-alive, a closing connection (pending bytes must go
out before the close) and a streamed body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.gateway.joined import JoinedWrites, JoinedWritesProtocol
from shared.embedded import free_port

pytestmark = pytest.mark.integration

WRITES: list[bytes] = []


class _Counted:
    """The real transport, recording every write that reaches it."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountedJoined(JoinedWritesProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(_Counted(transport))


class CountedPlain(HttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(_Counted(transport))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/stream":  # three body messages, yielding to the loop in between
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"status":"accepted","path":"' + scope["path"].encode() + b'"}'
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(protocol: type[asyncio.Protocol]) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol,
                                           log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("uvicorn did not start within 10 s")
        WRITES.clear()
        yield port
    finally:
        server.should_exit = True
        await task


def request(path: str, *, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n"
            b"connection: " + connection + b"\r\n\r\n{}")


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return head, await reader.readexactly(length)


async def test_each_response_leaves_in_one_write_and_keep_alive_works() -> None:
    async with serving(CountedJoined) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(3):
            writer.write(request(f"/alerts/{n}"))
            head, body = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 202 ")
            assert body == b'{"status":"accepted","path":"/alerts/' + str(n).encode() + b'"}'
        writer.close()
    assert len(WRITES) == 3
    assert all(w.startswith(b"HTTP/1.1 202 ") and w.endswith(b'"}') for w in WRITES)


async def test_uvicorns_own_protocol_writes_head_and_body_apart() -> None:
    """The baseline the protocol improves on (and what makes the test above meaningful)."""
    async with serving(CountedPlain) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/alerts/x"))
        await read_response(reader)
        writer.close()
    assert len(WRITES) == 2


async def test_a_closing_connection_gets_its_whole_response_first() -> None:
    async with serving(CountedJoined) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/alerts/last", close=True))
        data = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        writer.close()
    assert data.startswith(b"HTTP/1.1 202 ")
    assert data.endswith(b'{"status":"accepted","path":"/alerts/last"}')
    assert b"connection: close" in data.lower()


async def test_a_streamed_body_arrives_whole_and_in_order() -> None:
    async with serving(CountedJoined) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/stream", close=True))
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    head, _, chunked = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert chunked == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"
    # The head leaves with the first part; parts of later loop steps go on their own.
    assert WRITES[0].startswith(b"HTTP/1.1 200 ")
    assert WRITES[0].endswith(b"\r\n\r\n4\r\none \r\n")
    assert WRITES[1:] == [b"4\r\ntwo \r\n", b"5\r\nthree\r\n", b"0\r\n\r\n"]


class _Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_the_proxy_joins_one_step_flushes_before_close_and_drops_after() -> None:
    transport = _Recording()
    joined = JoinedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(b"head ")
    joined.write(b"body")
    assert transport.writes == []  # nothing yet: the step is not over
    await asyncio.sleep(0)
    assert transport.writes == [b"head body"]
    joined.write(b"last")
    joined.close()  # pending bytes first, then the close
    assert (transport.writes, transport.closed) == ([b"head body", b"last"], True)
    joined.write(b"late")
    await asyncio.sleep(0)
    assert transport.writes == [b"head body", b"last"]  # a closed transport gets nothing
    assert joined.get_extra_info("peername") == "info:peername"  # the rest is the transport's
