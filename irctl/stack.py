"""The whole local stack as separate processes: what `irctl up` and the e2e tests run.

Order: broker (embedded Tansu, or an external Kafka), topics, approval keys,
a local SMTP mail sink (so e-mail pages really travel over SMTP), the demo
world (simulated production with its alert rules pointed at the gateway),
then every service as its own OS process with its own log file. `start()`
returns once every service answers `/healthz`; `stop()` sends SIGTERM to
everything in reverse order and kills what does not exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx

from shared.embedded import EMBEDDED_MAX_PARTITIONS, free_ports

SERVICES = ("gateway", "triage", "escalation", "investigator", "approval", "executor", "reporter")
DEFAULT_PORTS = {
    "gateway": 8080, "triage": 8081, "escalation": 8082, "investigator": 8083,
    "reporter": 8084, "approval": 8085, "executor": 8086, "world": 9100, "kafka": 9092,
    "smtp": 2525,
}
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class StackConfig:
    """How to run the stack; defaults are the `irctl up` ones."""

    state_dir: Path = Path(".state")
    memory: bool = False
    bootstrap_servers: str | None = None
    topic_prefix: str = ""
    # Cap on every created topic's partitions; None: EMBEDDED_MAX_PARTITIONS on the
    # embedded broker, the catalog's counts on a given Kafka.
    max_partitions: int | None = None
    time_scale: float = 1.0
    demo: bool = True
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "demo:"
    gateway_token: str = "demo-gateway-token"  # noqa: S105 - the local demo's token
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    config_dir: Path = ROOT / "demo" / "config"
    traffic_rps: float = 20.0
    # The demo world's physics do not scale with time_scale: a faster demo needs a
    # shorter error-rate window, and verification measured in real seconds.
    world_window_s: float = 5.0
    alert_eval_interval_s: float = 0.5
    alert_repeat_s: float = 15.0
    verification_deadline_s: float = 45.0
    recovery_hold_s: float = 3.0
    approval_ttl_s: float = 600.0  # a human needs real minutes to read and decide
    correlation_window_s: float = 60.0  # the world's alerts trickle in over real seconds
    settle_window_s: float = 15.0  # and a cascade reaches every dependent's alert rule in them
    extra_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def ephemeral(cls, state_dir: Path, **overrides: Any) -> StackConfig:
        """A config on free ports, memory broker unless one is given: for tests."""
        ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
        return cls(state_dir=state_dir, memory=True, ports=ports, **overrides)


class MailSink:
    """A real SMTP server (aiosmtpd) that stores every message under a folder."""

    def __init__(self, folder: Path, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        sink = self

        class _Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                name = f"{time.time_ns()}.eml"
                (sink.folder / name).write_bytes(envelope.original_content or envelope.content)
                return "250 Message accepted for delivery"

        self.controller = Controller(_Handler(), hostname="127.0.0.1", port=port)

    def start(self) -> None:
        """Start listening."""
        self.controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self.controller.stop()

    def messages(self) -> list[Message]:
        """Every message received so far, oldest first."""
        return [message_from_bytes(p.read_bytes()) for p in sorted(self.folder.glob("*.eml"))]


class Stack:
    """Broker, mail sink, demo world and services, started and stopped together."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir.resolve()
        self.broker: Any = None
        self.mail: MailSink | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.bootstrap = config.bootstrap_servers or f"127.0.0.1:{config.ports['kafka']}"

    # --- addresses -------------------------------------------------------------

    def url(self, name: str) -> str:
        """Base URL of a service or of the demo world."""
        return f"http://127.0.0.1:{self.config.ports[name]}"

    @property
    def max_partitions(self) -> int | None:
        """Cap on created topics' partitions: the config's, else the embedded layout on the
        embedded broker (none on a given Kafka)."""
        if self.config.max_partitions is None and self.config.bootstrap_servers is None:
            return EMBEDDED_MAX_PARTITIONS
        return self.config.max_partitions

    @property
    def reports_dir(self) -> Path:
        """Where the reporter writes."""
        return self.state_dir / "reports"

    # --- lifecycle ---------------------------------------------------------------

    def start(self, services: tuple[str, ...] = SERVICES, timeout_s: float = 120.0) -> None:
        """Start everything and wait until every service is healthy."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        if self.config.bootstrap_servers is None:
            from shared.embedded import EmbeddedBroker

            self.broker = EmbeddedBroker(
                memory=self.config.memory, state_dir=self.state_dir / "broker",
                port=self.config.ports["kafka"],
            )
            self.broker.start()
            self.bootstrap = self.broker.bootstrap_servers
        import asyncio

        from shared.topics_admin import create_topics

        asyncio.run(create_topics(self.bootstrap, self.config.topic_prefix,
                                  max_partitions=self.max_partitions))
        self._ensure_keys()
        self.mail = MailSink(self.state_dir / "mail", self.config.ports["smtp"])
        self.mail.start()
        if self.config.demo:
            self._spawn("world", self._world_command(), {})
            self._wait_http(self.url("world") + "/health", timeout_s, "demo world")
        for name in services:
            self.start_service(name)
        for name in services:
            self._wait_http(self.url(name) + "/healthz", timeout_s, name)

    def start_service(self, name: str) -> None:
        """(Re)start one service process."""
        env = {**self._common_env(), "IR_HTTP_PORT": str(self.config.ports[name]),
               **self._service_env(name), **self.config.service_env.get(name, {})}
        self._spawn(name, [sys.executable, "-m", f"services.{name}"], env)

    def wait_healthy(self, name: str, timeout_s: float = 60.0) -> None:
        """Block until a service answers /healthz with 200."""
        self._wait_http(self.url(name) + "/healthz", timeout_s, name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one process (SIGKILL by default) and reap it."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM every process in reverse order; SIGKILL stragglers; stop sink and broker."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.mail is not None:
            self.mail.stop()
            self.mail = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last lines of a process's log file."""
        path = self.state_dir / "logs" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- internals ---------------------------------------------------------------

    def _ensure_keys(self) -> None:
        from shared.approval_token import generate_keypair

        keys = self.state_dir / "keys"
        if not (keys / "approval.pem").exists():
            generate_keypair(keys / "approval.pem", keys / "approval.pub")

    def _common_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "IR_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "IR_KAFKA_TOPIC_PREFIX": self.config.topic_prefix,
            "IR_KAFKA_SESSION_TIMEOUT_MS": "3000",
            "IR_KAFKA_FETCH_MAX_WAIT_MS": "50",
            "IR_KAFKA_CREATE_TOPICS": "false",
            "IR_TIME_SCALE": str(self.config.time_scale),
            "IR_CONFIG_DIR": str(self.config.config_dir),
            "IR_STATE_DIR": str(self.state_dir),
            "IR_LOG_FORMAT": "json",
            **self.config.extra_env,
        }

    def _service_env(self, name: str) -> dict[str, str]:
        world = self.url("world")
        keys = self.state_dir / "keys"
        per_service: dict[str, dict[str, str]] = {
            "gateway": {"IR_GATEWAY_TOKENS": self.config.gateway_token},
            "triage": self._real_seconds("IR_TRIAGE_CORRELATION_WINDOW_S",
                                         self.config.correlation_window_s),
            "escalation": {
                **self._real_seconds("IR_ESCALATION_SETTLE_WINDOW_S", self.config.settle_window_s),
                "IR_ESCALATION_SMTP_HOST": "127.0.0.1",
                "IR_ESCALATION_SMTP_PORT": str(self.config.ports["smtp"]),
                "IR_ESCALATION_UI_URL": self.url("approval"),
            },
            "investigator": {"IR_INVESTIGATOR_WORLD_URL": world},
            "approval": {
                **self._real_seconds("IR_APPROVAL_APPROVAL_TTL_S", self.config.approval_ttl_s),
                "IR_APPROVAL_PRIVATE_KEY": str(keys / "approval.pem"),
                "IR_APPROVAL_PUBLIC_KEY": str(keys / "approval.pub"),
                "IR_APPROVAL_GENERATE_KEYS": "false",
            },
            "executor": {
                **self._real_seconds("IR_EXECUTOR_VERIFICATION_DEADLINE_S",
                                     self.config.verification_deadline_s),
                **self._real_seconds("IR_EXECUTOR_VERIFICATION_INTERVAL_S", 1.0),
                **self._real_seconds("IR_EXECUTOR_RECOVERY_HOLD_S", self.config.recovery_hold_s),
                **self._real_seconds("IR_EXECUTOR_APPROVAL_TTL_S", self.config.approval_ttl_s),
                "IR_EXECUTOR_WORLD_URL": world,
                "IR_EXECUTOR_REDIS_URL": self.config.redis_url,
                "IR_EXECUTOR_REDIS_PREFIX": self.config.redis_prefix,
                "IR_EXECUTOR_APPROVAL_PUBLIC_KEY": str(keys / "approval.pub"),
            },
            "reporter": {"IR_REPORTER_REPORTS_DIR": str(self.reports_dir)},
        }
        return per_service.get(name, {})

    def _real_seconds(self, var: str, seconds: float) -> dict[str, str]:
        """A setting the service scales by time_scale, chosen so it lasts `seconds` for real."""
        if self.config.time_scale >= 1.0:
            return {}
        return {var: str(seconds / self.config.time_scale)}

    def _world_command(self) -> list[str]:
        return [
            sys.executable, "-m", "demo.world",
            "--port", str(self.config.ports["world"]),
            "--state-dir", str(self.state_dir / "demo"),
            "--redis-url", self.config.redis_url,
            "--redis-prefix", self.config.redis_prefix,
            "--alert-webhook", self.url("gateway") + "/alerts/alertmanager",
            "--alert-token", self.config.gateway_token,
            "--traffic-rps", str(self.config.traffic_rps),
            "--window-seconds", str(self.config.world_window_s),
            "--eval-interval", str(self.config.alert_eval_interval_s),
            "--alert-repeat-seconds", str(self.config.alert_repeat_s),
        ]

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = (self.state_dir / "logs" / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            cmd, cwd=ROOT, env=env or {**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()

    def _wait_http(self, url: str, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        proc = self.procs.get(what if what != "demo world" else "world")
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                name = what if what != "demo world" else "world"
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{self.log_tail(name)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{what} not healthy at {url} after {timeout_s} s")
