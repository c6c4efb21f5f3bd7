"""One simulated service: its own OS process, HTTP server, metrics, logs and failure modes.

Run by the supervisor as `python -m demo.world.service --name payments --port N ...`;
never started by hand. A request to `GET /` does a few milliseconds of "work",
then passes through the failure modes in the order a real request meets them:

1. a bad version (`--bad`) throws on ~80 % of requests and logs a version-specific
   ERROR, e.g. "NullPointerException in PaymentProcessor.charge (version v2.4.1)";
2. an error spike (pushed by the supervisor through `PUT /_admin/faults`) fails a
   share of requests until its deadline, with no deploy involved;
3. a connection leak grabs pool connections (and memory) that are never returned;
   once the pool is full every request fails with "ConnectionPool exhausted";
   only a restart (a fresh process) empties it;
4. services with a cache (catalog) read through Redis under `<prefix>cache:`;
   an entry that is not valid JSON is a "stuck cache": it has no TTL, so every
   request fails until somebody deletes the keys, after which the next request
   refills the cache with good entries;
5. dependencies are called concurrently; any failure there (5xx, refused
   connection, timeout) becomes a 502/504 here, so errors propagate upwards
   (payments fails -> checkout 502 -> storefront 502).

Only the state that a real process would hold lives here (pool, level, faults
pushed by the supervisor); the version and the bad flag are command-line
arguments, because a deploy is a restart with a new binary.

Metrics (`GET /metrics`, Prometheus text, own registry): `http_requests_total
{service,code}`, `http_request_duration_seconds{service}`, `demo_service_up`,
`demo_service_version_info{service,version}`, the process collector
(`process_start_time_seconds`, memory), pool gauges, upstream error counters,
and for cache services `demo_cache_hits_total`, `demo_cache_misses_total`,
`demo_cache_errors_total`.

The process dies with its supervisor: `PR_SET_PDEATHSIG` (Linux) plus a
watchdog thread that exits when the parent pid changes (any POSIX).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from pydantic import BaseModel
from redis.exceptions import RedisError

from demo.world import scenario
from demo.world.logs import JsonLogWriter, log_path, normalize_level

PR_SET_PDEATHSIG = 1
PRODUCT_COUNT = 20
CACHE_TTL_SECONDS = 60
POOL_WAIT_SECONDS = 0.2
LEAKED_BYTES_PER_CONNECTION = 256 * 1024


@dataclass
class ServiceOptions:
    """Everything a service process is started with."""

    name: str
    port: int
    version: str
    state_dir: Path
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "demo:"
    deps: dict[str, str] = field(default_factory=dict)
    bad: bool = False
    bad_error_rate: float = 0.8
    log_level: str = "INFO"
    cache: bool = False
    parent_pid: int | None = None
    pool_size: int = 50
    summary_seconds: float = 10.0
    upstream_timeout: float = 2.0


class LevelBody(BaseModel):
    """Body of a log-level change."""

    level: str


class FaultsBody(BaseModel):
    """The supervisor's desired fault state for this process."""

    error_spike_until: float = 0.0
    error_spike_rate: float = 0.7
    leak: bool = False


class RequestFailedError(Exception):
    """A request that ends in an error status; the message is what gets logged."""

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields


class Metrics:
    """The Prometheus metrics of one service, on a private registry."""

    def __init__(self, service: str, version: str, cache: bool) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests_total",
            "Requests handled, by status code",
            ["service", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Request latency",
            ["service"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        up = Gauge(
            "demo_service_up", "1 while the process serves", ["service"], registry=self.registry
        )
        up.labels(service).set(1)
        Gauge(
            "demo_service_version_info",
            "The deployed version",
            ["service", "version"],
            registry=self.registry,
        ).labels(service, version).set(1)
        self.upstream_errors = Counter(
            "demo_upstream_errors_total",
            "Failed calls to dependencies",
            ["service", "upstream"],
            registry=self.registry,
        )
        self.pool_in_use = Gauge(
            "demo_db_pool_connections_in_use",
            "Database pool connections checked out",
            ["service"],
            registry=self.registry,
        )
        self.pool_max = Gauge(
            "demo_db_pool_connections_max",
            "Database pool size",
            ["service"],
            registry=self.registry,
        )
        self.cache_hits: Counter | None = None
        self.cache_misses: Counter | None = None
        self.cache_errors: Counter | None = None
        if cache:
            self.cache_hits = Counter(
                "demo_cache_hits_total", "Cache hits", ["service"], registry=self.registry
            )
            self.cache_misses = Counter(
                "demo_cache_misses_total", "Cache misses", ["service"], registry=self.registry
            )
            self.cache_errors = Counter(
                "demo_cache_errors_total",
                "Cache reads that failed (unreachable or corrupt entry)",
                ["service"],
                registry=self.registry,
            )


class ServiceRuntime:
    """The in-process state of one service and its request handling."""

    def __init__(self, opts: ServiceOptions) -> None:
        self.opts = opts
        self.log = JsonLogWriter(
            log_path(opts.state_dir, opts.name), opts.name, opts.version, opts.log_level
        )
        self.metrics = Metrics(opts.name, opts.version, opts.cache)
        self.metrics.pool_max.labels(opts.name).set(opts.pool_size)
        self.metrics.pool_in_use.labels(opts.name).set(0)
        self.faults = FaultsBody()
        self.pool_in_use = 0
        self._leaked: list[bytearray] = []
        self._pool_warned = False
        self.http: httpx.AsyncClient | None = None
        self.redis: aioredis.Redis | None = None
        self._window_requests = 0
        self._window_errors = 0
        self._window_durations: list[float] = []

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open clients and log the start."""
        self.http = httpx.AsyncClient(timeout=self.opts.upstream_timeout)
        if self.opts.cache:
            self.redis = aioredis.Redis.from_url(
                self.opts.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        self.log.log(
            "INFO",
            f"{self.opts.name} {self.opts.version} started on 127.0.0.1:{self.opts.port}",
            dependencies=sorted(self.opts.deps) or None,
        )

    async def stop(self) -> None:
        """Close clients and log the shutdown."""
        self.log.log("INFO", f"{self.opts.name} {self.opts.version} shutting down")
        if self.http is not None:
            await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.log.close()

    async def summary_loop(self) -> None:
        """Log an INFO summary of the traffic every summary_seconds."""
        while True:
            await asyncio.sleep(self.opts.summary_seconds)
            n, errors, durations = (
                self._window_requests,
                self._window_errors,
                sorted(self._window_durations),
            )
            self._window_requests, self._window_errors, self._window_durations = 0, 0, []
            if n == 0:
                continue
            p95 = durations[min(len(durations) - 1, int(len(durations) * 0.95))] * 1000
            self.log.log(
                "WARNING" if errors > n * 0.05 else "INFO",
                f"handled {n} requests in the last {self.opts.summary_seconds:g}s, "
                f"{errors} failed, p95 {p95:.0f} ms",
                requests=n,
                errors=errors,
                p95_ms=round(p95, 1),
            )

    # --- faults --------------------------------------------------------------------

    def set_faults(self, faults: FaultsBody) -> None:
        """Apply the supervisor's desired fault state (clearing the leak frees the pool)."""
        if self.faults.leak and not faults.leak:
            self._release_pool()
        if faults.error_spike_until > time.time() and self.faults.error_spike_until <= time.time():
            self.log.log("DEBUG", "error spike fault armed", until=faults.error_spike_until)
        self.faults = faults

    def _release_pool(self) -> None:
        self.pool_in_use = 0
        self._leaked.clear()
        self._pool_warned = False
        self.metrics.pool_in_use.labels(self.opts.name).set(0)

    def _leak(self) -> None:
        if self.pool_in_use >= self.opts.pool_size or random.random() >= 0.5:
            return
        self.pool_in_use += 1
        self._leaked.append(bytearray(LEAKED_BYTES_PER_CONNECTION))
        self.metrics.pool_in_use.labels(self.opts.name).set(self.pool_in_use)
        if not self._pool_warned and self.pool_in_use >= self.opts.pool_size * 0.8:
            self._pool_warned = True
            self.log.log(
                "WARNING",
                f"connection pool nearly exhausted: {self.pool_in_use}/{self.opts.pool_size} "
                f"in use (pool={self.opts.name}-db)",
                pool_in_use=self.pool_in_use,
            )

    # --- request handling ----------------------------------------------------------

    async def handle(self, request_id: str) -> tuple[int, dict[str, Any]]:
        """Serve one `GET /`: (status, body); failures are logged here."""
        started = time.perf_counter()
        try:
            body = await self._serve(request_id)
            status = 200
        except RequestFailedError as exc:
            status = exc.status
            body = {"service": self.opts.name, "error": exc.message}
            self.log.log("ERROR", exc.message, request_id=request_id, status=status, **exc.fields)
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(self.opts.name, str(status)).inc()
        self.metrics.duration.labels(self.opts.name).observe(elapsed)
        self._window_requests += 1
        self._window_errors += status >= 500
        self._window_durations.append(elapsed)
        if self.log.enabled("DEBUG"):
            self.log.log(
                "DEBUG",
                f"GET / {status} in {elapsed * 1000:.1f} ms",
                request_id=request_id,
                status=status,
                duration_ms=round(elapsed * 1000, 1),
            )
        return status, body

    async def _serve(self, request_id: str) -> dict[str, Any]:
        name = self.opts.name
        pressure = self.pool_in_use / max(self.opts.pool_size, 1)
        await asyncio.sleep(random.uniform(0.002, 0.008) + 0.05 * pressure)
        if self.opts.bad and random.random() < self.opts.bad_error_rate:
            raise RequestFailedError(
                500,
                scenario.bad_deploy_error(name, self.opts.version),
                exception="NullPointerException",
            )
        if time.time() < self.faults.error_spike_until and (
            random.random() < self.faults.error_spike_rate
        ):
            raise RequestFailedError(500, scenario.error_spike_error(name))
        if self.faults.leak:
            self._leak()
        if self.pool_in_use >= self.opts.pool_size:
            await asyncio.sleep(POOL_WAIT_SECONDS)
            raise RequestFailedError(
                503,
                scenario.pool_exhausted_error(
                    name, self.pool_in_use, self.opts.pool_size, int(POOL_WAIT_SECONDS * 1000)
                ),
                pool_in_use=self.pool_in_use,
            )
        result: dict[str, Any] = {"service": name, "version": self.opts.version}
        if self.opts.cache:
            result["product"] = await self._read_catalog()
        await self._call_dependencies(request_id)
        return result

    async def _read_catalog(self) -> dict[str, Any]:
        index = await self._cached(f"{self.opts.redis_prefix}cache:catalog:index", _load_index)
        products = index.get("products") if isinstance(index, dict) else None
        if not isinstance(products, list) or not products:
            raise RequestFailedError(500, "catalog index is empty")
        product_id = random.choice(products)
        product = await self._cached(
            f"{self.opts.redis_prefix}cache:product:{product_id}",
            lambda: _load_product(int(product_id)),
        )
        return product if isinstance(product, dict) else {}

    async def _cached(self, key: str, loader: Any) -> Any:
        assert self.redis is not None
        m = self.metrics
        try:
            raw = await self.redis.get(key)
        except (RedisError, OSError) as exc:
            if m.cache_errors is not None:
                m.cache_errors.labels(self.opts.name).inc()
            self.log.log("WARNING", f"cache unavailable, reading from the database: {exc}", key=key)
            return loader()
        if raw is None:
            if m.cache_misses is not None:
                m.cache_misses.labels(self.opts.name).inc()
            value = loader()
            with contextlib.suppress(RedisError, OSError):
                await self.redis.set(key, json.dumps(value), ex=CACHE_TTL_SECONDS)
            return value
        try:
            value = json.loads(raw)
        except ValueError as exc:
            if m.cache_errors is not None:
                m.cache_errors.labels(self.opts.name).inc()
            raise RequestFailedError(
                500, scenario.cache_corrupt_error(key, f"{type(exc).__name__}: {exc}"), key=key
            ) from exc
        if m.cache_hits is not None:
            m.cache_hits.labels(self.opts.name).inc()
        return value

    async def _call_dependencies(self, request_id: str) -> None:
        if not self.opts.deps:
            return
        results = await asyncio.gather(
            *(self._call(dep, url, request_id) for dep, url in sorted(self.opts.deps.items()))
        )
        for failure in results:
            if failure is not None:
                raise failure

    async def _call(self, dep: str, url: str, request_id: str) -> RequestFailedError | None:
        assert self.http is not None
        try:
            resp = await self.http.get(url + "/", headers={"x-request-id": request_id})
        except httpx.TimeoutException:
            failure = RequestFailedError(
                504,
                f"upstream {dep} timed out after {self.opts.upstream_timeout * 1000:.0f} ms",
                upstream=dep,
            )
        except httpx.TransportError as exc:
            failure = RequestFailedError(
                502,
                f"upstream {dep} unreachable: {type(exc).__name__} (connection refused?)",
                upstream=dep,
            )
        else:
            if resp.status_code < 500:
                return None
            failure = RequestFailedError(
                502, f"upstream {dep} returned HTTP {resp.status_code}", upstream=dep
            )
        self.metrics.upstream_errors.labels(self.opts.name, dep).inc()
        return failure


def _load_index() -> dict[str, Any]:
    return {"products": list(range(1, PRODUCT_COUNT + 1)), "generated_at": time.time()}


def _load_product(product_id: int) -> dict[str, Any]:
    return {"id": product_id, "name": f"Product {product_id}", "price": round(9.99 + product_id, 2)}


def create_app(opts: ServiceOptions) -> FastAPI:
    """The HTTP app of one service process."""
    runtime = ServiceRuntime(opts)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        summary = asyncio.create_task(runtime.summary_loop())
        try:
            yield
        finally:
            summary.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await summary
            await runtime.stop()

    app = FastAPI(title=f"demo {opts.name}", lifespan=lifespan)
    app.state.runtime = runtime

    @app.get("/")
    async def root(request: Request) -> JSONResponse:
        """Handle one business request (calls the dependencies)."""
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        status, body = await runtime.handle(request_id)
        return JSONResponse(body, status_code=status)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the process serves HTTP."""
        return {"ok": True, "service": opts.name, "version": opts.version, "pid": os.getpid()}

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/_admin/log-level")
    async def get_level() -> dict[str, str]:
        """The live log level."""
        return {"service": opts.name, "level": runtime.log.level}

    @app.post("/_admin/log-level")
    async def set_level(body: LevelBody) -> dict[str, str]:
        """Change the live log level."""
        try:
            level = normalize_level(body.level)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        old = runtime.log.level
        runtime.log.level = level
        runtime.log.log("WARNING", f"log level changed from {old} to {level}")
        return {"service": opts.name, "level": level}

    @app.put("/_admin/faults")
    async def put_faults(body: FaultsBody) -> dict[str, Any]:
        """Set the fault state the supervisor wants (error spike, leak)."""
        runtime.set_faults(body)
        return {"service": opts.name, **body.model_dump(), "pool_in_use": runtime.pool_in_use}

    return app


def _die_with_parent(parent_pid: int | None) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid is None:
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def parse_args(argv: list[str] | None = None) -> ServiceOptions:
    """Parse the command line of a service process."""
    p = argparse.ArgumentParser(prog="python -m demo.world.service")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--redis-prefix", default="demo:")
    p.add_argument("--dep", action="append", default=[], help="name=http://host:port")
    p.add_argument("--bad", action="store_true")
    p.add_argument("--bad-error-rate", type=float, default=0.8)
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--cache", action="store_true")
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--pool-size", type=int, default=50)
    p.add_argument("--summary-seconds", type=float, default=10.0)
    p.add_argument("--upstream-timeout", type=float, default=2.0)
    a = p.parse_args(argv)
    deps = dict(d.split("=", 1) for d in a.dep)
    return ServiceOptions(
        name=a.name,
        port=a.port,
        version=a.version,
        state_dir=Path(a.state_dir),
        redis_url=a.redis_url,
        redis_prefix=a.redis_prefix,
        deps=deps,
        bad=a.bad,
        bad_error_rate=a.bad_error_rate,
        log_level=a.log_level,
        cache=a.cache,
        parent_pid=a.parent_pid,
        pool_size=a.pool_size,
        summary_seconds=a.summary_seconds,
        upstream_timeout=a.upstream_timeout,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of a service process."""
    opts = parse_args(argv)
    _die_with_parent(opts.parent_pid)
    config = uvicorn.Config(
        create_app(opts),
        host="127.0.0.1",
        port=opts.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
