"""The whole stack as separate processes, a webhook receiver, and a tail of every topic."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import uvicorn
import yaml
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Request

from irctl.stack import ROOT, Stack, StackConfig
from shared.embedded import free_port
from shared.events import Event, parse_event
from shared.topics import Topic

E = TypeVar("E", bound=Event)


class WebhookReceiver:
    """A real HTTP server that records every POST (pages and status updates)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.port = free_port()
        app = FastAPI()

        @app.post("/{path:path}")
        async def record(path: str, request: Request) -> dict[str, bool]:
            self.calls.append({"path": path, "headers": dict(request.headers),
                               "json": await request.json()})
            return {"ok": True}

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "webhook receiver did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class EventTail:
    """Every event of every topic, collected by a background consumer."""

    def __init__(self, bootstrap: str, prefix: str = "") -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.events: list[Event] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._consume())

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            *[f"{self.prefix}{t}" for t in Topic], bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
            fetch_max_wait_ms=100)
        await consumer.start()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for rec in records:
                        try:
                            self.events.append(parse_event(rec.value or b""))
                        except ValueError:
                            continue
        finally:
            await consumer.stop()

    def __enter__(self) -> EventTail:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def of(self, kind: type[E], incident_id: str | None = None,
           where: Callable[[E], bool] = lambda _: True) -> list[E]:
        """Events of a type (for one incident), in arrival order."""
        return [e for e in list(self.events) if isinstance(e, kind)
                and (incident_id is None or e.incident_id == incident_id) and where(e)]

    def wait(self, kind: type[E], incident_id: str | None = None,
             where: Callable[[E], bool] = lambda _: True, timeout: float = 60.0,
             stack: Stack | None = None) -> E:
        """The first matching event, waiting up to timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(kind, incident_id, where)
            if found:
                return found[0]
            time.sleep(0.1)
        logs = ""
        if stack is not None:
            logs = "\n".join(f"--- {n}\n{stack.log_tail(n, 15)}" for n in stack.procs)
        seen = sorted({e.event_type for e in self.events})
        raise AssertionError(f"no {kind.__name__} within {timeout} s; saw {seen}\n{logs}")


def wait_until(cond: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll cond until truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def webhooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, webhooks: WebhookReceiver) -> Iterator[Stack]:
    """Broker, SMTP sink, demo world and all seven services, with pages to our receiver."""
    base = tmp_path_factory.mktemp("stack")
    config_dir = base / "config"
    shutil.copytree(ROOT / "demo" / "config", config_dir)
    oncall_path = config_dir / "oncall.yaml"
    oncall = yaml.safe_load(oncall_path.read_text())
    for person in oncall["people"]:
        person["webhook"] = webhooks.url(f"page/{person['name']}")
    oncall.setdefault("stakeholders", {})["webhook"] = webhooks.url("status")
    oncall_path.write_text(yaml.safe_dump(oncall))
    config = StackConfig.ephemeral(
        base / "state", time_scale=0.02, config_dir=config_dir,
        redis_prefix=f"e2e{uuid.uuid4().hex[:6]}:",
    )
    with Stack(config) as running:
        yield running


@pytest.fixture(scope="module")
def tail(stack: Stack) -> Iterator[EventTail]:
    with EventTail(stack.bootstrap) as events:
        yield events
