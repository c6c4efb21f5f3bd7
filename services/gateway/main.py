"""Builds and runs the gateway: HTTP in, `alert.received` out.

The gateway consumes nothing, so it does not use `shared.runtime.start`/`serve`:
those create topics and start the broker client before anything else and fail
when the broker is down, while the gateway's job is precisely to answer
(`/healthz` 503, alerts 503 + Retry-After) until the broker is back. Here the
HTTP server starts first and `AlertDelivery.connect` runs as the runtime's
background task, retrying until the broker answers. Stopping reverses it:
stop accepting requests (in-flight ones finish), cancel the connector, stop
the bus.

The gateway does not call `bus.restore` at start-up: that would replay a week
of high-volume `alert.received`. After a restart, a sender's resend within the
dedup window is published again under the same event id and consumers
(triage dedupes on `event_id`) drop the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from services.gateway import api, workers
from services.gateway.delivery import AlertDelivery
from services.gateway.front import AlertFront
from services.gateway.intake import AlertIntake
from services.gateway.joined import JoinedWritesProtocol
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from shared.catalog import ServiceCatalog
from shared.clock import Clock, SystemClock
from shared.observability import setup_logging
from shared.runtime import ServiceRuntime, build_runtime, run_loop, settle_heap
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic

log = logging.getLogger(__name__)

SERVICE = "gateway"
WORKER_READY_WAIT_S = 30.0


def load_catalog(path: Path) -> ServiceCatalog:
    """The service catalog at path; empty (every service its own group) when the file is missing."""
    if not path.is_file():
        log.warning("no service catalog at %s: every service is its own correlation group", path)
        return ServiceCatalog()
    return ServiceCatalog.load(path)


def create_runtime(
    *,
    kafka: KafkaSettings | None = None,
    settings: ServiceSettings | None = None,
    gateway: GatewaySettings | None = None,
    clock: Clock | None = None,
) -> ServiceRuntime:
    """The gateway's runtime: bus, FastAPI app with the alert routes, broker connector."""
    settings = settings or ServiceSettings()
    gateway = gateway or GatewaySettings()
    app = FastAPI(
        title="Incident orchestrator: alert gateway",
        version="1",
        description=api.DESCRIPTION,
        max_body_size=gateway.max_body_bytes,
        openapi_tags=[
            {"name": "alerts", "description": "Alertmanager, Grafana and our own JSON format"},
            {"name": "pagerduty", "description": "PagerDuty Events API v2 compatible intake"},
            {"name": "ops", "description": "Health and metrics"},
        ],
    )
    runtime = build_runtime(SERVICE, kafka=kafka, settings=settings, http=app)
    runtime.bus.declare_outputs([Topic.ALERT_RECEIVED])
    delivery = AlertDelivery(
        runtime.bus,
        timeout_s=gateway.publish_timeout_s,
        max_in_flight=gateway.max_in_flight_alerts,
        retry_max_s=gateway.connect_retry_max_s,
    )
    metrics = GatewayMetrics(runtime.bus.registry)
    intake = AlertIntake(
        delivery=delivery,
        catalog=load_catalog(gateway.catalog_file(settings.config_dir)),
        clock=clock or SystemClock(settings.time_scale),
        metrics=metrics,
        dedup_window_s=gateway.dedup_window_s,
    )
    api.install(
        app,
        intake=intake,
        metrics=metrics,
        tokens=gateway.tokens,
        routing_services=gateway.routing_services(),
        retry_after_s=gateway.retry_after_s,
    )
    # The server in front of the app: alert webhooks without FastAPI's per-request cost.
    runtime.components["delivery"] = delivery
    runtime.components["asgi"] = AlertFront(
        app, intake=intake, metrics=metrics, tokens=gateway.tokens,
        max_body_bytes=gateway.max_body_bytes, retry_after_s=gateway.retry_after_s,
    )
    runtime.background.append(delivery.connect)
    if not gateway.tokens:
        log.warning("IR_GATEWAY_TOKENS is not set: the gateway accepts unauthenticated alerts")
    return runtime


class _OwnSignals(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM/SIGINT to the gateway (one owner of shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do not install uvicorn's own handlers."""
        yield


class GatewayServer:
    """The gateway's HTTP server and broker connector in the running event loop."""

    def __init__(self, runtime: ServiceRuntime, *, host: str | None = None, port: int = 0) -> None:
        self.runtime = runtime
        config = uvicorn.Config(
            runtime.components.get("asgi", runtime.http),
            host=host or runtime.settings.http_host,
            port=port,
            log_config=None,
            lifespan="off",
            http=JoinedWritesProtocol,  # one send per response, not two (see joined.py)
        )
        self._server = _OwnSignals(config)
        self._serving: asyncio.Task[None] | None = None
        self._background: list[asyncio.Future[None]] = []

    @property
    def url(self) -> str:
        """Base URL the server listens on (after start)."""
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self, timeout_s: float = 10.0, *, reuse_port: bool = False) -> None:
        """Start serving HTTP and connecting to the broker; returns once HTTP accepts requests.

        reuse_port binds with SO_REUSEPORT, so the workers of `IR_GATEWAY_WORKERS`
        share the port. A worker joins the port only once it reached the broker
        (or after `WORKER_READY_WAIT_S`): the kernel would otherwise hand it new
        connections only to answer 503 while its siblings are healthy.
        """
        self._background = [asyncio.ensure_future(hook()) for hook in self.runtime.background]
        if reuse_port:
            await self._wait_connected(WORKER_READY_WAIT_S)
        sockets = [self._reuse_port_socket()] if reuse_port else None
        self._serving = asyncio.create_task(self._server.serve(sockets=sockets))
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if self._serving.done():
                await self._serving  # surfaces the start-up error
                raise RuntimeError("gateway HTTP server stopped during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway HTTP server not up within {timeout_s} s")
            await asyncio.sleep(0.02)

    async def _wait_connected(self, within_s: float) -> None:
        delivery: AlertDelivery = self.runtime.components["delivery"]
        deadline = time.monotonic() + within_s
        while not delivery.connected:
            if time.monotonic() > deadline:
                log.warning("no broker after %.0f s: joining the port anyway (answers 503)",
                            within_s)
                return
            await asyncio.sleep(0.05)

    def _reuse_port_socket(self) -> socket.socket:
        config = self._server.config
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, config.port))
        sock.set_inheritable(True)
        return sock

    async def stop(self) -> None:
        """Finish in-flight requests, stop connecting, disconnect from the broker."""
        self._server.should_exit = True
        if self._serving is not None:
            await self._serving
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for hook in self.runtime.on_stop:
            await hook()
        await self.runtime.bus.stop()


async def serve(runtime: ServiceRuntime, port: int, *, reuse_port: bool = False) -> None:
    """Run the gateway until SIGTERM/SIGINT."""
    server = GatewayServer(runtime, port=port)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await server.start(reuse_port=reuse_port)
    settle_heap()
    log.info("gateway listening on %s", server.url)
    await stop_requested.wait()
    log.info("gateway stopping")
    await server.stop()


def main() -> None:
    """Entry point of `python -m services.gateway`."""
    settings = ServiceSettings()
    gateway = GatewaySettings()
    port = gateway.port(settings.http_port)
    if gateway.workers > 1:
        setup_logging(SERVICE, settings.log_level, settings.log_format)
        sys.exit(workers.supervise(gateway.workers, port))
    runtime = create_runtime(settings=settings, gateway=gateway)
    run_loop(serve(runtime, port, reuse_port=os.environ.get(workers.REUSE_PORT_ENV) == "1"))
