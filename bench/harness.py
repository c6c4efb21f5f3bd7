"""What every benchmark shares: the stack under test, Alertmanager, the load generator, output.

Design decisions:

- **The real stack, as processes.** `BenchStack` wraps `irctl.stack.Stack`
  (embedded Tansu with memory storage on free ports, `demo=False`), pointed at
  a config dir holding the generated 200-service catalog. Extra triage
  replicas are started as further `Stack`s that share the first one's broker
  and topic prefix and start only `triage`: the same launcher, the same
  environment, each replica with its own `IR_TRIAGE_INSTANCE_ID` (triage
  names its lifecycle consumer group after it; replicas on one host would
  otherwise share the host name and split the lifecycle events between them).
- **A fresh stack per benchmark.** The memory broker never frees memory and
  triage keeps open incidents, so a benchmark never inherits another's state.
- **The load generator is another process** (`bench.loadgen`), started with
  the same interpreter; its CPU is reported next to the services'.
- **Output contract.** `emit` writes the human summary to stderr (rich) and
  the JSON object as the last line of stdout, nothing else on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.loadgen import LoadJob
from bench.procstat import ProcessSampler
from irctl.stack import ROOT, Stack, StackConfig
from shared.embedded import free_port

ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


class BenchError(RuntimeError):
    """A benchmark could not run (a process did not start, a deadline passed)."""


class BenchStack:
    """Broker + chosen services (+ extra triage replicas) on a generated config dir."""

    def __init__(
        self,
        work_dir: Path,
        *,
        config_dir: Path,
        services: tuple[str, ...] = ("gateway", "triage"),
        triage_replicas: int = 1,
        bootstrap: str | None = None,
        topic_prefix: str | None = None,
        log_level: str = "INFO",
        gateway_workers: int = 1,
    ) -> None:
        """topic_prefix: by default one of its own on a given broker (`topic_prefix_for`)."""
        self.work_dir = work_dir
        self.gateway_workers = gateway_workers
        self.config_dir = config_dir
        self.services = services
        self.triage_replicas = triage_replicas
        self.topic_prefix = topic_prefix_for(bootstrap) if topic_prefix is None else topic_prefix
        self.log_level = log_level
        self.main = Stack(self._config(work_dir / "stack", 1, bootstrap))
        self.replicas: list[Stack] = []

    def _config(self, state_dir: Path, instance: int, bootstrap: str | None) -> StackConfig:
        return StackConfig.ephemeral(
            state_dir, demo=False, config_dir=self.config_dir, bootstrap_servers=bootstrap,
            topic_prefix=self.topic_prefix,
            extra_env={"IR_LOG_LEVEL": self.log_level},
            service_env={
                "triage": {"IR_TRIAGE_INSTANCE_ID": f"bench-triage-{instance}"},
                "gateway": {"IR_GATEWAY_WORKERS": str(self.gateway_workers)},
            },
        )

    @property
    def bootstrap(self) -> str:
        """The broker's address."""
        return self.main.bootstrap

    @property
    def token(self) -> str:
        """The gateway's bearer token."""
        return self.main.config.gateway_token

    def url(self, service: str) -> str:
        """Base URL of a service of the main stack."""
        return self.main.url(service)

    def start(self) -> BenchStack:
        """Start the broker, the services and any extra triage replicas; wait until healthy."""
        try:
            self.main.start(services=self.services)
            for n in range(2, self.triage_replicas + 1):
                self.add_triage_replica(n)
        except BaseException:
            self.stop()
            raise
        return self

    def add_triage_replica(self, instance: int) -> Stack:
        """One more triage process in the same consumer group (shares broker and prefix)."""
        config = self._config(self.work_dir / f"stack-{instance}", instance, self.bootstrap)
        # On the main stack's broker: its topic layout, embedded or not.
        replica = Stack(replace(config, max_partitions=self.main.max_partitions))
        self.replicas.append(replica)
        replica.start(services=("triage",))
        return replica

    def pids(self) -> dict[str, int]:
        """PID of every process under test, by name (`triage-2` for the second replica)."""
        out = {name: proc.pid for name, proc in self.main.procs.items()}
        for n, replica in enumerate(self.replicas, 2):
            out.update({f"{name}-{n}": proc.pid for name, proc in replica.procs.items()})
        if self.main.broker is not None:
            out.update({f"broker-{k}": v for k, v in self.main.broker.pids.items()})
        return out

    def triage_urls(self) -> list[str]:
        """Base URL of every triage replica."""
        urls = [self.main.url("triage")] if "triage" in self.main.procs else []
        return urls + [r.url("triage") for r in self.replicas]

    def stop(self) -> None:
        """Stop replicas first, then the main stack (services, mail sink, broker)."""
        for replica in reversed(self.replicas):
            replica.stop()
        self.replicas.clear()
        self.main.stop()

    def __enter__(self) -> BenchStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def alertmanager_binary() -> str | None:
    """Path of an Alertmanager binary on PATH, if any."""
    for name in ALERTMANAGER_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


class AlertmanagerProcess:
    """A local Prometheus Alertmanager (no clustering) receiving on /api/v2/alerts."""

    CONFIG = (
        "route:\n  receiver: blackhole\n  group_by: [alertname, service]\n"
        "receivers:\n  - name: blackhole\n"
    )

    def __init__(self, work_dir: Path, binary: str) -> None:
        self.work_dir = work_dir
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> AlertmanagerProcess:
        """Start and wait until /-/ready answers."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self.work_dir / "alertmanager.yml"
        config.write_text(self.CONFIG)
        log = (self.work_dir / "alertmanager.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.path={self.work_dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"alertmanager exited with {self.proc.returncode}, see "
                                 f"{self.work_dir / 'alertmanager.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"alertmanager not ready after {timeout_s} s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def run_loadgen(
    job: LoadJob, work_dir: Path, *, sampler: ProcessSampler | None = None,
    name: str = "loadgen", timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run `bench.loadgen` as a separate process and return its result."""
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    job_file = work_dir / f"{name}-job.json"
    out_file = work_dir / f"{name}-result.json"
    job_file.write_text(json.dumps(asdict(job)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", str(job_file), str(out_file),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )
    if sampler is not None:
        sampler.watch("loadgen", proc.pid)
    limit = timeout_s or (job.deadline_s + job.warmup_s + job.duration_s + 60)
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BenchError(f"load generator did not finish within {limit:.0f} s") from None
    if proc.returncode != 0:
        raise BenchError(f"load generator failed ({proc.returncode}):\n"
                         f"{stderr.decode(errors='replace')[-3000:]}")
    result: dict[str, Any] = json.loads(out_file.read_text())
    return result


def self_usage() -> dict[str, float]:
    """CPU seconds and peak RSS of this (harness) process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """`--bootstrap`: an existing Kafka instead of a fresh embedded broker per stack."""
    parser.add_argument(
        "--bootstrap", default=None, metavar="HOST:PORT",
        help="run against this Kafka instead of a fresh embedded Tansu per stack; every "
             "stack gets topics of its own (prefix bench-<ms>.), left for you to delete")


def topic_prefix_for(bootstrap: str | None) -> str:
    """Topics of a stack's own on a shared broker; a fresh embedded one needs no prefix."""
    return "" if bootstrap is None else f"bench-{time.time_ns() // 1_000_000}."


def broker_label(bootstrap: str | None) -> str:
    """What the figures were measured on, for a result's config."""
    return "embedded tansu memory://" if bootstrap is None else f"kafka at {bootstrap}"


def host_info() -> dict[str, Any]:
    """The machine and the code the figures were taken on (they mean little without them)."""
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        **code_version(),
    }


def code_version() -> dict[str, Any]:
    """The commit under test, and how many files of the services differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "services", "shared", "irctl"], cwd=ROOT,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": commit, "uncommitted_service_files": len(dirty)}


async def scrape_counter(url: str, metric: str) -> dict[str, float]:
    """Samples of one Prometheus counter from a /metrics page, keyed by their label string."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(metric) and not line.startswith(f"{metric}_created"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key[len(metric):] or "{}"] = float(value)
    return out


def emit(result: dict[str, Any], render: Callable[[Console], None]) -> None:
    """Human summary to stderr, then the JSON object as the last line of stdout."""
    console = Console(stderr=True)
    try:
        render(console)
    except Exception as exc:  # a broken summary must never lose the machine-readable result
        console.print(f"[red]summary failed: {exc}[/red]")
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


def process_table(title: str, processes: dict[str, dict[str, Any]]) -> Table:
    """A rich table of per-process CPU and memory."""
    table = Table(title=title)
    for column in ("process", "CPU s", "cores", "RSS MB", "peak RSS MB"):
        table.add_column(column, justify="right" if column != "process" else "left")
    for name, p in processes.items():
        table.add_row(name, str(p.get("cpu_s")), str(p.get("cpu_cores")), str(p.get("rss_mb")),
                      str(p.get("peak_rss_mb")))
    return table


def fmt(value: object) -> str:
    """A figure for a table cell (None as a dash)."""
    return "-" if value is None else str(value)
