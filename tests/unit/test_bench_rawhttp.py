"""The benchmark's raw HTTP client retries only a stale kept-alive connection; triage by window.

The client tests talk to real asyncio TCP servers on 127.0.0.1 (no mocks): each
server counts the connections it accepted and the complete requests it read
before it acted, so "no retry" and "exactly one retry" are counted, not guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bench.rawhttp import HttpError, RawConnection, RawPool
from bench.scoring import pipeline_latency

pytestmark = pytest.mark.unit

DEADLINE_S = 5.0
CLIENT_TIMEOUT_S = 2.0
BODY = b'{"alerts": []}'
ANSWER = b'{"accepted": 1}'
KEEP_ALIVE_ANSWER = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER
)


@dataclass(frozen=True)
class Act:
    """What the server does with one request: write `payload`, then keep or close."""

    payload: bytes
    keep_open: bool


ANSWER_AND_KEEP = Act(KEEP_ALIVE_ANSWER, keep_open=True)
ANSWER_AND_CLOSE = Act(KEEP_ALIVE_ANSWER, keep_open=False)  # says keep-alive, then idles out
CLOSE_UNANSWERED = Act(b"", keep_open=False)


@dataclass
class CountingServer:
    """A tiny HTTP/1.1 server; `act(n)` decides what to do with the n-th request (from 1)."""

    act: Callable[[int], Act]
    connections: int = 0
    requests: int = 0
    bodies: list[bytes] = field(default_factory=list)
    handlers_done: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed the connection
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.bodies.append(await reader.readexactly(length))
                self.requests += 1
                act = self.act(self.requests)
                writer.write(act.payload)
                await writer.drain()
                if not act.keep_open:
                    return
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.handlers_done += 1
            self.changed.set()

    async def wait_handlers_done(self, count: int) -> None:
        """Until `count` connections have ended on the server's side (bounded by the deadline)."""
        async with asyncio.timeout(DEADLINE_S):
            while self.handlers_done < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def serving(act: Callable[[int], Act]) -> AsyncIterator[tuple[CountingServer, str]]:
    """A CountingServer on an ephemeral loopback port, and its URL."""
    state = CountingServer(act)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield state, f"http://127.0.0.1:{port}/api/v2/alerts"
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), DEADLINE_S)


def connection(url: str) -> RawConnection:
    return RawConnection(url, {"Content-Type": "application/json"}, CLIENT_TIMEOUT_S)


async def test_a_connection_closed_while_idle_is_retried_on_a_new_one() -> None:
    """The server answers with keep-alive, then closes; the next post is re-sent once."""
    async with serving(lambda n: ANSWER_AND_CLOSE) as (server, url):
        client = connection(url)
        try:
            async with asyncio.timeout(DEADLINE_S):
                assert await client.post(BODY) == (202, ANSWER)
                await server.wait_handlers_done(1)  # the kept-alive connection is now stale
                assert await client.post(b'{"second": true}') == (202, ANSWER)
        finally:
            await client.close()
    assert server.connections == 2
    assert server.requests == 2
    assert server.bodies == [BODY, b'{"second": true}']


async def test_a_fresh_connection_that_fails_is_not_retried() -> None:
    """The request reached the server on a brand-new connection: its failure is the answer."""
    async with serving(lambda n: CLOSE_UNANSWERED) as (server, url):
        client = connection(url)
        try:
            async with asyncio.timeout(DEADLINE_S):
                with pytest.raises(HttpError):
                    await client.post(BODY)
        finally:
            await client.close()
    assert server.requests == 1
    assert server.connections == 1


PARTIAL_ANSWERS = {
    "part of the status line": b"HTTP/1.1 20",
    "status line only": b"HTTP/1.1 202 Accepted\r\n",
    "mid headers": b"HTTP/1.1 202 Accepted\r\nContent-Length: 15\r\n",
    "mid body": b"HTTP/1.1 202 Accepted\r\nContent-Length: 15\r\n\r\n{\"acc",
}
# How the second request on a kept-alive connection fails -> (requests, connections) seen.
SECOND_FAILURES = {
    # Dropped unanswered, on the old and on the new connection: retried exactly once.
    "unanswered": (CLOSE_UNANSWERED, 3, 2),
    # Once part of an answer arrived the server has the request: no second send.
    **{f"partly answered: {name}": (Act(partial, keep_open=False), 2, 1)
       for name, partial in PARTIAL_ANSWERS.items()},
}


@pytest.mark.parametrize(("second", "requests", "connections"), SECOND_FAILURES.values(),
                         ids=SECOND_FAILURES.keys())
async def test_a_reused_connection_is_retried_only_when_nothing_was_answered(
    second: Act, requests: int, connections: int,
) -> None:
    """First request answered with keep-alive; the second fails: HttpError either way."""
    async with serving(lambda n: ANSWER_AND_KEEP if n == 1 else second) as (server, url):
        client = connection(url)
        try:
            async with asyncio.timeout(DEADLINE_S):
                assert await client.post(BODY) == (202, ANSWER)
                with pytest.raises(HttpError):
                    await client.post(BODY)
        finally:
            await client.close()
    assert server.requests == requests
    assert server.connections == connections


async def test_the_pool_reuses_a_recent_connection_and_replaces_an_idle_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within max_idle_s the kept-alive connection is reused; past it, a new one is opened."""
    max_idle_s = 0.25
    async with serving(lambda n: ANSWER_AND_KEEP) as (server, url):
        pool = RawPool(url, {"Content-Type": "application/json"}, CLIENT_TIMEOUT_S, size=1)
        monkeypatch.setattr(pool, "max_idle_s", max_idle_s)
        try:
            async with asyncio.timeout(DEADLINE_S):
                assert await pool.post(BODY) == (202, ANSWER)
                assert await pool.post(BODY) == (202, ANSWER)
                assert server.connections == 1
                # Idleness itself is the condition under test: sleeping past it is the point.
                await asyncio.sleep(max_idle_s + 0.05)
                assert await pool.post(BODY) == (202, ANSWER)
                assert server.connections == 2
                await server.wait_handlers_done(1)  # the pool closed the idle one
        finally:
            await pool.close()
    assert server.requests == 3


async def test_the_pool_keeps_a_connection_within_the_default_idle_limit() -> None:
    """With the default max_idle_s (seconds), back-to-back posts share one connection."""
    assert RawPool.max_idle_s >= 1.0
    async with serving(lambda n: ANSWER_AND_KEEP) as (server, url):
        pool = RawPool(url, {}, CLIENT_TIMEOUT_S, size=2)
        try:
            async with asyncio.timeout(DEADLINE_S):
                for _ in range(3):
                    assert await pool.post(BODY) == (202, ANSWER)
        finally:
            await pool.close()
    assert server.connections == 1
    assert server.requests == 3


def _latency(
    rows: list[tuple[str, float, float, str]],
    membership: dict[str, dict[str, float]],
    window_s: float = 10.0,
) -> dict[str, Any]:
    return pipeline_latency(
        accepted=rows,
        detections=set(),
        received={},
        membership=membership,
        classified_by_alert={},
        notified_first={},
        window_s=window_s,
    )


def test_triage_latency_is_split_by_when_the_alert_was_sent() -> None:
    """Windows of window_s from the earliest send; empty windows are left out."""
    start = 1000.0
    sends = {  # event_id: (sent offset s, triage latency ms)
        "a": (0.0, 100.0),
        "b": (4.0, 300.0),
        "c": (9.5, 200.0),
        "d": (10.0, 1000.0),
        "e": (19.0, 3000.0),
        "g": (35.0, 50.0),
    }
    rows = [(f"bench-{eid}", start + off, start + off + 0.01, eid)
            for eid, (off, _) in sends.items()]
    membership = {eid: {f"inc-{eid}": start + off + ms / 1000}
                  for eid, (off, ms) in sends.items()}
    # "f" is sent within the third window (20-30 s) but never triaged: that window stays absent.
    rows.append(("bench-f", start + 25.0, start + 25.01, "f"))
    # An alert in two incidents counts once, at its first triage.
    membership["g"]["inc-other"] = start + 35.0 + 0.5

    triaged = _latency(rows, membership)["to_triaged"]
    windows = triaged["by_window"]
    assert [w["from_s"] for w in windows] == [0.0, 10.0, 30.0]
    assert [w["count"] for w in windows] == [3, 2, 1]
    assert [w["p50"] for w in windows] == [200.0, 2000.0, 50.0]
    assert [w["max"] for w in windows] == [300.0, 3000.0, 50.0]
    assert triaged["missing"] == 1
    assert sum(w["count"] for w in windows) == triaged["from_sent_ms"]["count"] == 6


def test_triage_windows_follow_window_s_and_are_empty_without_triage() -> None:
    """A custom window_s regroups the same rows; no triaged alert means no window at all."""
    rows = [("b1", 50.0, 50.0, "x"), ("b2", 52.0, 52.0, "y"), ("b3", 56.0, 56.0, "z")]
    membership = {"x": {"i": 50.1}, "y": {"i": 52.3}, "z": {"i": 56.2}}
    windows = _latency(rows, membership, window_s=5.0)["to_triaged"]
    assert [(w["from_s"], w["count"], w["p50"]) for w in windows["by_window"]] == [
        (0.0, 2, 200.0),
        (5.0, 1, 200.0),
    ]
    untriaged = _latency(rows, {})["to_triaged"]
    assert untriaged["by_window"] == []
    assert untriaged["missing"] == 3
