"""The supervisor: owns the service processes, their history and faults, and the control API.

One `World` holds everything an operator of the simulated production system
could see or do:

- a `ManagedService` per catalog service: its fixed loopback port (kept across
  restarts, so dependents keep their address), its current version and
  whether that version is bad, its configured log level, and its OS process;
- the deploy history, seeded at start (see `demo.world.scenario`) and appended
  by every deploy and rollback (a rollback is a deploy of the previous version);
- the faults: which are injected where, and how each is cured. A bad deploy is
  cured by a rollback or a good deploy; a crash by a restart; a leak by a
  restart (it lives in the process); a stuck cache by deleting the poisoned
  keys in Redis (nothing in the supervisor remembers it: it is active exactly
  while a poisoned key exists); an error spike ends at its deadline or on
  `DELETE /faults`;
- a scraper that reads every `/metrics` each evaluation interval into a sliding
  window (`demo.world.stats`), which gives `GET /status` and the alert rules;
- a traffic generator (`demo.world.traffic`) and, with a webhook, the alerter
  (`demo.alerter`).

Processes are spawned with `subprocess.Popen` from the event-loop thread (the
main thread): `PR_SET_PDEATHSIG`, which each child sets, fires when the
*thread* that forked it exits, so spawning from a worker thread would kill the
children with that thread. Children run in their own session so a terminal's
Ctrl-C reaches only the supervisor, which then stops them in order.

Nothing restarts a process by itself (restart policy "never"): a dead service
stays dead until somebody calls `POST /services/{name}/restart`, which is what
the incident system's executor is there for. When a process dies, the
supervisor writes the kind of line a container runtime would into the
service's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import httpx
import redis.asyncio as aioredis
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from demo.alerter import Alerter, AlerterConfig, ServiceHealth
from demo.world import scenario
from demo.world.logs import append_record, log_path, normalize_level, parse_iso, read_logs, utc_iso
from demo.world.stats import RollingCounters, parse_counters
from demo.world.traffic import TrafficGenerator
from shared.catalog import CatalogService, ServiceCatalog
from shared.embedded import free_ports

log = logging.getLogger("demo.world")
T = TypeVar("T")

FAULT_KINDS = ("bad_deploy", "error_spike", "stuck_cache", "crash", "leak")
DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "config" / "catalog.yaml"
READY_TIMEOUT = 20.0
STOP_GRACE = 3.0
RECOVERED_ERROR_RATE = 0.05


@dataclass
class WorldOptions:
    """Settings of one world (the command line of `python -m demo.world`)."""

    port: int = 9100
    host: str = "127.0.0.1"
    state_dir: Path = Path(".state/demo")
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "demo:"
    alert_webhook: str | None = None
    alert_token: str | None = None
    traffic_rps: float = 20.0
    window_seconds: float = 30.0
    eval_interval: float = 1.0
    alert_for: int = 2
    alert_repeat_seconds: float = 30.0
    alert_threshold: float = 0.2
    catalog_path: Path = DEFAULT_CATALOG
    bad_error_rate: float = 0.8
    error_spike_seconds: float = 120.0
    error_spike_rate: float = 0.7
    log_level: str = "INFO"
    pool_size: int = 50
    summary_seconds: float = 10.0
    external_url: str | None = None

    @property
    def base_url(self) -> str:
        """Where the control API answers."""
        return self.external_url or f"http://{self.host}:{self.port}"


class WorldError(Exception):
    """An API error: HTTP status and a message for the caller."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class ManagedService:
    """One service of the world and its process."""

    spec: CatalogService
    port: int
    version: str
    window_seconds: float
    log_level: str = "INFO"
    bad: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None
    stopping: bool = False
    crashed_at: datetime | None = None
    leak_since: datetime | None = None
    spike_since: datetime | None = None
    spike_until: float = 0.0
    spike_rate: float = 0.7
    scrape_ok: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    counters: RollingCounters = field(init=False)

    def __post_init__(self) -> None:
        self.counters = RollingCounters(self.window_seconds)

    @property
    def name(self) -> str:
        """The catalog name."""
        return self.spec.name

    @property
    def url(self) -> str:
        """Base URL of the service."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the OS process is alive."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def up(self) -> bool:
        """Alive and answering its scrape."""
        return self.running and self.scrape_ok

    def record(self, state_dir: Path) -> dict[str, Any]:
        """The public service record of `GET /services`."""
        running = self.running
        return {
            "name": self.name,
            "port": self.port,
            "pid": self.proc.pid if running and self.proc is not None else None,
            "url": self.url,
            "metrics_url": f"{self.url}/metrics",
            "version": self.version,
            "status": "running" if running else "stopped",
            "log_level": self.log_level,
            "started_at": utc_iso(self.started_at) if running and self.started_at else None,
            "tier": self.spec.tier,
            "team": self.spec.team,
            "depends_on": list(self.spec.depends_on),
            "log_file": str(log_path(state_dir, self.name)),
        }


async def wait_exit(proc: subprocess.Popen[bytes], within: float | None) -> bool:
    """Poll until proc exits (True) or within seconds pass (False); None waits forever."""
    deadline = None if within is None else time.monotonic() + within
    while proc.poll() is None:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _exit_description(pid: int, returncode: int) -> str:
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        how = f"killed by signal {sig} (exit code {128 - returncode})"
    else:
        how = f"exited with code {returncode}"
    return (
        f"process {pid} {how}; restart policy is 'never', "
        "the service stays down until it is restarted"
    )


class World:
    """The simulated production system: processes, history, faults, health, traffic."""

    def __init__(self, opts: WorldOptions, catalog: ServiceCatalog) -> None:
        self.opts = opts
        self.catalog = catalog
        ports = free_ports(len(catalog.services))
        self.services: dict[str, ManagedService] = {
            s.name: ManagedService(
                spec=s,
                port=port,
                version=scenario.initial_version(s.name),
                window_seconds=opts.window_seconds,
                log_level=normalize_level(opts.log_level),
                spike_rate=opts.error_spike_rate,
            )
            for s, port in zip(catalog.services, ports, strict=True)
        }
        self.deploys: list[dict[str, Any]] = []
        self._bad_versions: dict[tuple[str, str], bool] = {}
        self._stuck_since: dict[str, datetime] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.http = httpx.AsyncClient(timeout=2.0)
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            opts.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self.traffic = TrafficGenerator(self._traffic_targets, opts.traffic_rps)
        self.alerter: Alerter | None = None
        if opts.alert_webhook:
            self.alerter = Alerter(
                AlerterConfig(
                    webhook_url=opts.alert_webhook,
                    token=opts.alert_token,
                    external_url=opts.base_url,
                    interval=opts.eval_interval,
                    for_count=opts.alert_for,
                    repeat_seconds=opts.alert_repeat_seconds,
                    threshold=opts.alert_threshold,
                    window_seconds=opts.window_seconds,
                )
            )

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Fresh logs and cache, seeded history, all processes up, background loops running."""
        logs_dir = self.opts.state_dir / "logs"
        logs_dir.mkdir(parents=True, exist_ok=True)
        for name in self.services:
            for suffix in (".log", ".log.1", ".stderr"):
                with contextlib.suppress(FileNotFoundError):
                    (logs_dir / f"{name}{suffix}").unlink()
        try:
            await self._delete_cache_keys()
        except (RedisError, OSError) as exc:
            log.warning("redis unreachable at start (%s); the catalog cache will degrade", exc)
        self._seed_history()
        self._spawn_all()
        await asyncio.gather(*(self._wait_ready(s) for s in self.services.values()))
        self._tasks = [
            asyncio.create_task(self._monitor_loop(), name="monitor"),
            asyncio.create_task(self._scrape_loop(), name="scrape"),
            asyncio.create_task(self.traffic.run(), name="traffic"),
        ]
        if self.alerter is not None:
            self._tasks.append(asyncio.create_task(self.alerter.run(self.healths), name="alerter"))
        log.info(
            "demo world up: %s",
            ", ".join(f"{s.name}={s.url}" for s in self.services.values()),
        )

    async def stop(self) -> None:
        """Stop the loops and every process; leave no cache keys behind."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        procs = [s.proc for s in self.services.values() if s.proc is not None]
        for s in self.services.values():
            s.stopping = True
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for p in procs:
            await wait_exit(p, max(0.0, deadline - time.monotonic()))
        self.kill_all()
        with contextlib.suppress(RedisError, OSError):
            await self._delete_cache_keys()
        await self.http.aclose()
        await self.redis.aclose()
        log.info("demo world stopped")

    def kill_all(self) -> None:
        """SIGKILL every child still alive (synchronous, safe in a finally)."""
        for s in self.services.values():
            p = s.proc
            if p is not None and p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=2)

    def _seed_history(self) -> None:
        now = datetime.now(UTC)
        self.deploys = []
        for seed in scenario.seed_history(list(self.services), now):
            self._record_deploy(
                seed.service,
                seed.version,
                seed.previous_version,
                seed.author,
                seed.change,
                at=seed.deployed_at,
            )
            self._bad_versions[(seed.service, seed.version)] = False

    # --- processes ---------------------------------------------------------------------

    def _command(self, svc: ManagedService) -> list[str]:
        o = self.opts
        cmd = [
            sys.executable,
            "-m",
            "demo.world.service",
            "--name",
            svc.name,
            "--port",
            str(svc.port),
            "--version",
            svc.version,
            "--state-dir",
            str(o.state_dir),
            "--redis-url",
            o.redis_url,
            "--redis-prefix",
            o.redis_prefix,
            "--log-level",
            svc.log_level,
            "--parent-pid",
            str(os.getpid()),
            "--bad-error-rate",
            str(o.bad_error_rate),
            "--pool-size",
            str(o.pool_size),
            "--summary-seconds",
            str(o.summary_seconds),
        ]
        for dep in svc.spec.depends_on:
            if dep in self.services:
                cmd += ["--dep", f"{dep}={self.services[dep].url}"]
        if svc.bad:
            cmd.append("--bad")
        if svc.name in scenario.CACHE_SERVICES:
            cmd.append("--cache")
        return cmd

    def _spawn(self, svc: ManagedService) -> None:
        root = str(Path(__file__).resolve().parent.parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        stderr_path = self.opts.state_dir / "logs" / f"{svc.name}.stderr"
        with stderr_path.open("ab") as err:
            svc.proc = subprocess.Popen(
                self._command(svc),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        svc.started_at = datetime.now(UTC)
        svc.scrape_ok = False
        svc.stopping = False

    def _spawn_all(self) -> None:
        for svc in self.services.values():
            self._spawn(svc)

    async def _wait_ready(self, svc: ManagedService) -> None:
        proc = svc.proc
        assert proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise WorldError(500, f"{svc.name} exited with code {proc.returncode} at start")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                resp = await self.http.get(f"{svc.url}/healthz", timeout=0.5)
                if resp.status_code == 200 and resp.json().get("pid") == proc.pid:
                    svc.scrape_ok = True
                    await self._push_faults(svc)
                    return
            await asyncio.sleep(0.05)
        raise WorldError(500, f"{svc.name} did not become ready within {READY_TIMEOUT:g}s")

    async def _start(self, svc: ManagedService) -> None:
        self._spawn(svc)
        await self._wait_ready(svc)

    async def _stop(self, svc: ManagedService, force: bool = False) -> None:
        proc = svc.proc
        if proc is None:
            return
        svc.stopping = True
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if force:
                    proc.kill()
                else:
                    proc.terminate()
            if not await wait_exit(proc, STOP_GRACE):
                proc.kill()
                await wait_exit(proc, None)
        svc.proc = None
        svc.started_at = None
        svc.scrape_ok = False
        svc.stopping = False

    def _note_exit(self, svc: ManagedService, proc: subprocess.Popen[bytes]) -> None:
        rc = proc.returncode if proc.returncode is not None else -9
        msg = _exit_description(proc.pid, rc)
        log.warning("%s: %s", svc.name, msg)
        append_record(
            log_path(self.opts.state_dir, svc.name),
            {
                "ts": utc_iso(),
                "level": "ERROR",
                "service": svc.name,
                "version": svc.version,
                "pid": proc.pid,
                "msg": msg,
                "logger": "supervisor",
                "exit_code": 128 - rc if rc < 0 else rc,
            },
        )
        svc.proc = None
        svc.started_at = None
        svc.scrape_ok = False

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            for svc in self.services.values():
                proc = svc.proc
                if proc is None or svc.stopping or svc.lock.locked():
                    continue
                if proc.poll() is not None:
                    self._note_exit(svc, proc)
                    if svc.crashed_at is None:
                        svc.crashed_at = datetime.now(UTC)

    async def _push_faults(self, svc: ManagedService) -> None:
        if not svc.running:
            return
        body = {
            "error_spike_until": svc.spike_until,
            "error_spike_rate": svc.spike_rate,
            "leak": svc.leak_since is not None,
        }
        if not body["leak"] and svc.spike_until <= time.time():
            return  # a fresh process starts without faults
        resp = await self.http.put(f"{svc.url}/_admin/faults", json=body)
        resp.raise_for_status()

    # --- metrics ---------------------------------------------------------------------------

    async def _scrape(self, svc: ManagedService) -> None:
        proc = svc.proc
        if proc is None or proc.poll() is not None:
            svc.scrape_ok = False
            return
        try:
            resp = await self.http.get(
                f"{svc.url}/metrics", timeout=max(0.5, self.opts.eval_interval)
            )
            resp.raise_for_status()
            sample = parse_counters(resp.text, time.monotonic(), proc.pid)
        except (httpx.HTTPError, ValueError):
            svc.scrape_ok = False
            return
        svc.counters.add(sample)
        svc.scrape_ok = True

    async def _scrape_loop(self) -> None:
        while True:
            await asyncio.gather(*(self._scrape(s) for s in self.services.values()))
            await asyncio.sleep(self.opts.eval_interval)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per service: up, error rate over the window, version, and whether it is healthy."""
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for s in self.services.values():
            st = s.counters.stats(now)
            up = s.up
            rate = st.error_rate if up else 1.0
            entry: dict[str, Any] = {
                "name": s.name,
                "up": up,
                "status": "running" if s.running else "stopped",
                "version": s.version,
                "error_rate": round(rate, 4),
                "requests": int(st.requests),
                "errors": int(st.errors),
                "window_seconds": self.opts.window_seconds,
                "healthy": up and rate < RECOVERED_ERROR_RATE,
            }
            if s.name in scenario.CACHE_SERVICES:
                entry["cache_error_rate"] = round(st.cache_error_rate, 4)
            out[s.name] = entry
        return out

    def healths(self) -> list[ServiceHealth]:
        """The alert rules' view of every service."""
        now = time.monotonic()
        out = []
        for s in self.services.values():
            st = s.counters.stats(now)
            cache = s.name in scenario.CACHE_SERVICES
            out.append(
                ServiceHealth(
                    service=s.name,
                    tier=s.spec.tier,
                    up=s.up,
                    error_rate=st.error_rate,
                    requests=st.requests,
                    cache_error_rate=st.cache_error_rate if cache else None,
                    cache_lookups=st.cache_lookups,
                    maintenance=s.lock.locked() and s.crashed_at is None,
                )
            )
        return out

    def _traffic_targets(self) -> list[tuple[str, str, float]]:
        entries = {n: w for n, w in scenario.ENTRY_POINTS.items() if n in self.services}
        if not entries:  # another catalog: call the services nobody depends on
            entries = {n: 1.0 for n in self.services if not self.catalog.dependents(n)}
        return [(n, self.services[n].url, w) for n, w in entries.items()]

    # --- operations ----------------------------------------------------------------------

    def get(self, name: str) -> ManagedService:
        """The service named name; WorldError 404 when unknown."""
        svc = self.services.get(name)
        if svc is None:
            raise WorldError(404, f"unknown service {name!r}; known: {', '.join(self.services)}")
        return svc

    def service_records(self) -> list[dict[str, Any]]:
        """Every service record."""
        return [s.record(self.opts.state_dir) for s in self.services.values()]

    async def restart(self, name: str, mode: str = "graceful") -> dict[str, Any]:
        """Restart a service process (a new pid; SIGTERM, or SIGKILL when mode is force)."""
        svc = self.get(name)
        async with svc.lock:
            await self._stop(svc, force=mode == "force")
            svc.crashed_at = None
            svc.leak_since = None
            await self._start(svc)
        log.info("%s restarted (pid %s)", name, svc.proc.pid if svc.proc else None)
        return svc.record(self.opts.state_dir)

    def _record_deploy(
        self,
        service: str,
        version: str,
        previous: str,
        author: str,
        change: str,
        *,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        record = {
            "id": f"dep-{len(self.deploys) + 1:04d}",
            "service": service,
            "version": version,
            "previous_version": previous,
            "deployed_at": utc_iso(at or datetime.now(UTC)),
            "author": author,
            "change": change,
        }
        self.deploys.append(record)
        return record

    async def deploy(
        self, name: str, version: str, author: str, change: str, bad: bool = False
    ) -> dict[str, Any]:
        """Record a deploy and restart the service with the new version."""
        svc = self.get(name)
        version = version.strip()
        if not version:
            raise WorldError(422, "version must not be empty")
        async with svc.lock:
            record = self._record_deploy(name, version, svc.version, author, change)
            self._bad_versions[(name, version)] = bad
            await self._stop(svc)
            svc.version, svc.bad = version, bad
            svc.crashed_at = None
            svc.leak_since = None
            await self._start(svc)
        log.info("deployed %s %s (bad=%s) by %s", name, version, bad, author)
        return record

    async def rollback(self, name: str, author: str = "operator") -> dict[str, Any]:
        """Redeploy the version that preceded the current one."""
        svc = self.get(name)
        current = next((d for d in reversed(self.deploys) if d["service"] == name), None)
        if current is None:
            raise WorldError(409, f"{name} has no previous version to roll back to")
        target = str(current["previous_version"])
        return await self.deploy(
            name,
            target,
            author,
            f"rollback to {target} (from {svc.version})",
            bad=self._bad_versions.get((name, target), False),
        )

    def deploy_history(self, service: str | None, since: datetime | None) -> list[dict[str, Any]]:
        """Deploys, oldest first, optionally of one service and at or after since."""
        if service is not None:
            self.get(service)
        return [
            d
            for d in self.deploys
            if (service is None or d["service"] == service)
            and (since is None or parse_iso(d["deployed_at"]) >= since)
        ]

    async def set_log_level(self, name: str, level: str) -> dict[str, Any]:
        """Change a service's log level, live when it runs (kept across restarts)."""
        svc = self.get(name)
        try:
            level = normalize_level(level)
        except ValueError as exc:
            raise WorldError(422, str(exc)) from exc
        svc.log_level = level
        applied = False
        if svc.running:
            resp = await self.http.post(f"{svc.url}/_admin/log-level", json={"level": level})
            applied = resp.status_code == 200
        return {"service": name, "level": level, "applied": applied}

    async def get_log_level(self, name: str) -> dict[str, Any]:
        """The live level (asked from the process) or the configured one when stopped."""
        svc = self.get(name)
        if svc.running:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                resp = await self.http.get(f"{svc.url}/_admin/log-level")
                return {"service": name, "level": resp.json()["level"], "live": True}
        return {"service": name, "level": svc.log_level, "live": False}

    async def logs(
        self, name: str, since: datetime | None, level: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Recent log records of a service, oldest first."""
        self.get(name)
        if level is not None:
            try:
                level = normalize_level(level)
            except ValueError as exc:
                raise WorldError(422, str(exc)) from exc
        path = log_path(self.opts.state_dir, name)
        return await asyncio.to_thread(read_logs, path, since, level, limit)

    # --- faults ------------------------------------------------------------------------------

    async def inject(
        self,
        kind: str,
        name: str,
        duration_seconds: float | None = None,
        rate: float | None = None,
    ) -> dict[str, Any]:
        """Inject a fault into a service; returns the fault record."""
        if kind not in FAULT_KINDS:
            raise WorldError(404, f"unknown fault {kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        svc = self.get(name)
        now = datetime.now(UTC)
        fault: dict[str, Any] = {"kind": kind, "service": name, "since": utc_iso(now)}
        if kind == "bad_deploy":
            taken = {d["version"] for d in self.deploys if d["service"] == name}
            version = scenario.next_version(svc.version, taken)
            fault["deploy"] = await self.deploy(
                name, version, "ci-bot", scenario.bad_deploy_change(name), bad=True
            )
            fault["version"] = version
        elif kind == "error_spike":
            seconds = duration_seconds or self.opts.error_spike_seconds
            svc.spike_since = now
            svc.spike_until = time.time() + seconds
            svc.spike_rate = rate if rate is not None else self.opts.error_spike_rate
            fault["until"] = utc_iso(svc.spike_until)
            await self._push_faults(svc)
        elif kind == "leak":
            if not svc.running:
                raise WorldError(409, f"{name} is not running")
            svc.leak_since = now
            await self._push_faults(svc)
        elif kind == "crash":
            await self._crash(svc)
        else:
            fault["keys"] = await self._poison_cache(svc)
            self._stuck_since[name] = now
        log.info("fault %s injected into %s", kind, name)
        return fault

    async def _crash(self, svc: ManagedService) -> None:
        async with svc.lock:
            proc = svc.proc
            if proc is None or proc.poll() is not None:
                raise WorldError(409, f"{svc.name} is not running")
            proc.send_signal(signal.SIGKILL)
            await wait_exit(proc, None)
            svc.crashed_at = datetime.now(UTC)
            self._note_exit(svc, proc)

    async def _poison_cache(self, svc: ManagedService) -> list[str]:
        if svc.name not in scenario.CACHE_SERVICES:
            raise WorldError(
                422,
                f"{svc.name} has no cache; stuck_cache applies to "
                + ", ".join(sorted(scenario.CACHE_SERVICES)),
            )
        p = self.opts.redis_prefix
        poison: dict[str, bytes] = {
            f"{p}cache:catalog:index": b'{"products": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1',
        }
        for pid in (3, 7, 11):
            poison[f"{p}cache:product:{pid}"] = (
                f'{{"id": {pid}, "name": "Product {pid}", "pri'.encode() + b"\x00\x00\x00"
            )
        try:
            for key, value in poison.items():
                await self.redis.set(key, value)  # no TTL: that is what makes it stuck
        except (RedisError, OSError) as exc:
            raise WorldError(503, f"redis unavailable: {exc}") from exc
        return sorted(poison)

    async def _poisoned_keys(self) -> list[str]:
        keys: list[str] = []
        async for key in self.redis.scan_iter(match=f"{self.opts.redis_prefix}cache:*", count=500):
            raw = await self.redis.get(key)
            if raw is None:
                continue
            try:
                json.loads(raw)
            except ValueError:
                keys.append(key.decode() if isinstance(key, bytes) else str(key))
        return sorted(keys)

    async def _delete_cache_keys(self) -> int:
        deleted = 0
        async for key in self.redis.scan_iter(match=f"{self.opts.redis_prefix}cache:*", count=500):
            deleted += int(await self.redis.delete(key))
        return deleted

    async def faults(self) -> list[dict[str, Any]]:
        """Faults active right now."""
        out: list[dict[str, Any]] = []
        for s in self.services.values():
            if s.bad:
                current = next((d for d in reversed(self.deploys) if d["service"] == s.name), None)
                out.append(
                    {
                        "kind": "bad_deploy",
                        "service": s.name,
                        "since": current["deployed_at"] if current else None,
                        "version": s.version,
                    }
                )
            if s.spike_until > time.time():
                out.append(
                    {
                        "kind": "error_spike",
                        "service": s.name,
                        "since": utc_iso(s.spike_since) if s.spike_since else None,
                        "until": utc_iso(s.spike_until),
                    }
                )
            if s.leak_since is not None and s.running:
                out.append({"kind": "leak", "service": s.name, "since": utc_iso(s.leak_since)})
            if s.crashed_at is not None and not s.running:
                out.append({"kind": "crash", "service": s.name, "since": utc_iso(s.crashed_at)})
        try:
            poisoned = await self._poisoned_keys()
        except (RedisError, OSError):
            poisoned = []
        for name in sorted(scenario.CACHE_SERVICES & set(self.services)):
            if poisoned:
                since = self._stuck_since.get(name)
                out.append(
                    {
                        "kind": "stuck_cache",
                        "service": name,
                        "since": utc_iso(since) if since else None,
                        "keys": poisoned,
                    }
                )
            else:
                self._stuck_since.pop(name, None)
        return out

    async def clear_faults(self) -> dict[str, Any]:
        """Clear every non-deploy fault: spikes, leaks, the stuck cache; restart crashed ones."""
        active = [f for f in await self.faults() if f["kind"] != "bad_deploy"]
        for s in self.services.values():
            had_fault = s.leak_since is not None or s.spike_until > time.time()
            s.spike_until, s.spike_since, s.leak_since = 0.0, None, None
            if s.running and had_fault:
                resp = await self.http.put(
                    f"{s.url}/_admin/faults",
                    json={"error_spike_until": 0.0, "leak": False},
                )
                resp.raise_for_status()
        with contextlib.suppress(RedisError, OSError):
            await self._delete_cache_keys()
        self._stuck_since.clear()
        for s in self.services.values():
            if s.crashed_at is not None and not s.running:
                await self.restart(s.name)
        return {"cleared": active}


# --- HTTP API ------------------------------------------------------------------------------


class IdempotencyCache:
    """Answers a POST repeated with the same `Idempotency-Key` with the first answer.

    The executor delivers at least once: a redelivered "restart" must not restart
    twice. A key is remembered per path (the last `size` keys); a failed first
    attempt is forgotten, so its retry runs again.
    """

    def __init__(self, size: int = 1000) -> None:
        self._size = size
        self._done: OrderedDict[tuple[str, str], asyncio.Future[Any]] = OrderedDict()

    async def run(self, request: Request, action: Callable[[], Awaitable[T]]) -> T:
        """Run action once per (path, Idempotency-Key); without a key, always run it."""
        key = request.headers.get("idempotency-key")
        if not key:
            return await action()
        slot = (request.url.path, key)
        known = self._done.get(slot)
        if known is not None:
            result: T = await asyncio.shield(known)
            return result
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._done[slot] = future
        while len(self._done) > self._size:
            self._done.popitem(last=False)
        try:
            value = await action()
        except BaseException as exc:
            self._done.pop(slot, None)
            future.set_exception(exc)
            future.exception()  # retrieved: duplicates waiting on it re-raise it
            raise
        future.set_result(value)
        return value


class RestartBody(BaseModel):
    """Optional body of `POST /services/{name}/restart`."""

    mode: Literal["graceful", "force"] = "graceful"


class DeployBody(BaseModel):
    """Body of `POST /services/{name}/deploy`."""

    version: str
    author: str = "unknown"
    change: str = ""
    bad: bool = False


class RollbackBody(BaseModel):
    """Optional body of `POST /services/{name}/rollback`."""

    author: str = "operator"


class LogLevelBody(BaseModel):
    """Body of `POST /services/{name}/log-level`."""

    level: str


class FaultBody(BaseModel):
    """Body of `POST /faults/{kind}`."""

    service: str
    duration_seconds: float | None = Field(None, gt=0, description="error_spike only")
    rate: float | None = Field(None, ge=0, le=1, description="error_spike only")


def _parse_since(since: str | None) -> datetime | None:
    if since is None or since == "":
        return None
    try:
        return parse_iso(since)
    except ValueError as exc:
        raise WorldError(422, f"since must be an ISO-8601 timestamp, got {since!r}") from exc


def create_app(opts: WorldOptions, catalog: ServiceCatalog | None = None) -> FastAPI:
    """The supervisor's control API; the world starts and stops with the app."""
    world = World(opts, catalog or ServiceCatalog.load(opts.catalog_path))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await world.start()
            yield
        finally:
            await world.stop()

    app = FastAPI(title="demo world supervisor", lifespan=lifespan)
    app.state.world = world
    once = IdempotencyCache()

    @app.exception_handler(WorldError)
    async def world_error(_: Request, exc: WorldError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        """Liveness of the supervisor (answers once every service started)."""
        return {"ok": True}

    @app.get("/services")
    async def services() -> list[dict[str, Any]]:
        """Every service record."""
        return world.service_records()

    @app.get("/services/{name}")
    async def service(name: str) -> dict[str, Any]:
        """One service record."""
        return world.get(name).record(opts.state_dir)

    @app.post("/services/{name}/restart")
    async def restart(
        name: str, request: Request, body: Annotated[RestartBody | None, Body()] = None
    ) -> dict[str, Any]:
        """Restart the process; returns the new record."""
        mode = (body or RestartBody()).mode
        return await once.run(request, lambda: world.restart(name, mode))

    @app.get("/deploys")
    async def deploys(service: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        """Deploy history, oldest first."""
        return world.deploy_history(service or None, _parse_since(since))

    @app.post("/services/{name}/deploy")
    async def deploy(name: str, body: DeployBody, request: Request) -> dict[str, Any]:
        """Deploy a version (restarts the process)."""
        b = body
        return await once.run(
            request, lambda: world.deploy(name, b.version, b.author, b.change, b.bad)
        )

    @app.post("/services/{name}/rollback")
    async def rollback(
        name: str, request: Request, body: Annotated[RollbackBody | None, Body()] = None
    ) -> dict[str, Any]:
        """Redeploy the previous version."""
        author = (body or RollbackBody()).author
        return await once.run(request, lambda: world.rollback(name, author))

    @app.post("/services/{name}/log-level")
    async def set_log_level(name: str, body: LogLevelBody) -> dict[str, Any]:
        """Change the live log level."""
        return await world.set_log_level(name, body.level)

    @app.get("/services/{name}/log-level")
    async def get_log_level(name: str) -> dict[str, Any]:
        """The current log level."""
        return await world.get_log_level(name)

    @app.get("/logs/{name}")
    async def logs(
        name: str,
        since: str | None = None,
        limit: int = Query(200, ge=1, le=10000),
        level: str | None = None,
    ) -> list[dict[str, Any]]:
        """Recent log lines, oldest first; level is a minimum."""
        return await world.logs(name, _parse_since(since), level or None, limit)

    @app.post("/faults/{kind}")
    async def inject(kind: str, body: FaultBody, request: Request) -> dict[str, Any]:
        """Inject a fault."""
        b = body
        return await once.run(
            request, lambda: world.inject(kind, b.service, b.duration_seconds, b.rate)
        )

    @app.get("/faults")
    async def faults() -> list[dict[str, Any]]:
        """Active faults."""
        return await world.faults()

    @app.delete("/faults")
    async def clear_faults() -> dict[str, Any]:
        """Clear every non-deploy fault."""
        return await world.clear_faults()

    @app.get("/status")
    async def status() -> dict[str, dict[str, Any]]:
        """Per-service health over the sliding window."""
        return world.status()

    @app.get("/alerts")
    async def alerts() -> dict[str, Any]:
        """The alerter's firing alerts and delivery counts (empty without a webhook)."""
        if world.alerter is None:
            return {"enabled": False, "active": [], "sent": 0, "failed": 0}
        a = world.alerter
        return {"enabled": True, "active": a.active(), "sent": len(a.sent), "failed": a.failed}

    return app
