"""How a service process runs: bus + HTTP server + background tasks, one event loop.

Each service's `main.py` builds a `ServiceRuntime` (its bus, its FastAPI app,
its start-up replay and its timers) and calls `run(runtime)`. Start-up order
matters for correctness: topics exist, then the projection is rebuilt from the
log (`on_start` hooks, typically `bus.restore(...)`), then subscribers start,
then timers, then HTTP. SIGTERM stops them in reverse order, committing what
was handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.kafka import EventBus
from shared.observability import health_app, setup_logging, setup_tracing
from shared.settings import KafkaSettings, ServiceSettings

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


@dataclass
class ServiceRuntime:
    """Everything one service process runs."""

    name: str
    bus: EventBus
    settings: ServiceSettings
    http: FastAPI
    on_start: list[Hook] = field(default_factory=list)
    background: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    components: dict[str, Any] = field(default_factory=dict)  # domain objects, for tests


def build_runtime(
    name: str,
    *,
    kafka: KafkaSettings | None = None,
    settings: ServiceSettings | None = None,
    http: FastAPI | None = None,
) -> ServiceRuntime:
    """Settings, logging, tracing, bus and health endpoints for service name."""
    settings = settings or ServiceSettings()
    kafka = kafka or KafkaSettings()
    setup_logging(name, settings.log_level, settings.log_format)
    provider = setup_tracing(name, settings.otlp_endpoint)
    registry = CollectorRegistry()
    bus = EventBus(kafka, name, registry=registry, tracer_provider=provider)
    app = health_app(name, bus, registry, http)
    return ServiceRuntime(name=name, bus=bus, settings=settings, http=app)


async def start(runtime: ServiceRuntime) -> list[asyncio.Task[None]]:
    """Create topics, run start hooks (replay), start subscribers and background tasks."""
    bus = runtime.bus
    await bus.ensure_topics()
    for hook in runtime.on_start:
        await hook()
    await bus.broker.start()
    return [asyncio.create_task(_guard(runtime.name, h)) for h in runtime.background]


YOUNG_GC_THRESHOLD = 50_000


def settle_heap() -> None:
    """Exclude everything alive after start-up from the cyclic GC's full collections.

    A service's start-up leaves hundreds of thousands of long-lived objects
    (imported modules, pydantic and FastAPI schemas, the restored projection).
    CPython's oldest-generation collection walks all of them: 50-100 ms pauses
    in triage, escalation and the gateway at 1,000 alerts/s, straight into the
    latency tail. `gc.freeze()` moves them to the permanent generation,
    so a full collection walks only what was allocated since. Frozen objects
    are still freed when their reference count drops; only a frozen reference
    cycle that later becomes garbage stays, which for start-up state is a
    bounded, one-time cost.

    It also raises the youngest generation's threshold from 700 to
    `YOUNG_GC_THRESHOLD`. The count is allocations net of deallocations, and
    a request's objects live until its acks arrive: at 500 alerts per webhook
    each gateway worker ran ~135 young and ~12 middle collections a second, walking
    the alerts still awaiting the broker, a tenth of its CPU (measured with
    `gc.callbacks`). At 50,000 the benchmark's load never reached the
    threshold (objects die by reference count, which the GC does not affect);
    reference cycles wait longer to be collected, at most that many objects.
    Called by the process entry points after start-up (not by `start`, which
    tests call in-process).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


async def _guard(name: str, hook: Hook) -> None:
    """Run a background loop; log and restart it if it crashes, so nothing dies silently."""
    while True:
        try:
            await hook()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s background task crashed; restarting in 1 s", name)
            await asyncio.sleep(1.0)


async def stop(runtime: ServiceRuntime, tasks: list[asyncio.Task[None]]) -> None:
    """Cancel background tasks, run stop hooks, stop the bus."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for hook in runtime.on_stop:
        await hook()
    await runtime.bus.stop()


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the service (one owner of SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do not install uvicorn's own handlers."""
        yield


async def serve(runtime: ServiceRuntime) -> None:
    """Run the service until SIGTERM/SIGINT."""
    tasks = await start(runtime)
    settle_heap()
    config = uvicorn.Config(
        runtime.http,
        host=runtime.settings.http_host,
        port=runtime.settings.http_port,
        log_config=None,
        lifespan="off",
    )
    server = _QuietServer(config)
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    http_task = asyncio.create_task(server.serve())
    log.info("%s started", runtime.name)
    await stop_event.wait()
    log.info("%s stopping", runtime.name)
    server.should_exit = True
    await http_task
    await stop(runtime, tasks)


def run(runtime: ServiceRuntime) -> None:
    """Blocking entry point for a service's `main`."""
    run_loop(serve(runtime))


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine on uvloop when installed (`uvicorn[standard]`), else asyncio.

    uvloop roughly halves the event loop's own cost per socket event, which is
    most of a service's overhead per HTTP request and per Kafka round trip.
    `IR_EVENT_LOOP=asyncio` opts out.
    """
    if os.environ.get("IR_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:  # e.g. Windows: uvloop does not exist there
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
