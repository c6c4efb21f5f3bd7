"""Several gateway processes on one port: `IR_GATEWAY_WORKERS=N`.

One Python process normalises and publishes about 10,000 alerts/s on one
core; a host with more cores runs N workers. Each worker is a whole gateway
(own HTTP server, own Kafka producer) started as `python -m services.gateway`
with `IR_GATEWAY_WORKERS=1`; they bind the same port with `SO_REUSEPORT`, so
the kernel spreads connections across them. Nothing is shared between them
that correctness needs: event ids are derived from the alert, so a retry that
lands on another worker still deduplicates downstream. (The PagerDuty route's
memory of `dedup_key` -> service is per worker; an acknowledge/resolve that
lands on a worker that has not seen the trigger falls back to the routing
key's bound service, as after a restart.)

A worker binds the port only once it has reached the broker (or after 30 s,
then answering 503 like a lone gateway without a broker), so a restarted
worker does not take a share of new connections only to refuse them.

The supervisor (this module) starts the workers, restarts one that dies
(after a second, so a crash loop does not spin), forwards SIGTERM/SIGINT and
exits when they have all stopped. `/metrics` stays one view of the gateway:
the workers write their counters to `PROMETHEUS_MULTIPROC_DIR` (a directory
the supervisor creates) and whichever worker answers a scrape aggregates all
of them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

log = logging.getLogger(__name__)

REUSE_PORT_ENV = "IR_GATEWAY_REUSE_PORT"
RESTART_DELAY_S = 1.0


def supervise(workers: int, port: int) -> int:
    """Run `workers` gateway processes on port until SIGTERM/SIGINT; their worst exit code."""
    if port == 0:
        raise SystemExit("IR_GATEWAY_WORKERS > 1 needs a fixed port (IR_GATEWAY_HTTP_PORT)")
    metrics_dir = tempfile.mkdtemp(prefix="ir-gateway-metrics-")
    env = {
        **os.environ,
        "IR_GATEWAY_WORKERS": "1",
        "IR_GATEWAY_HTTP_PORT": str(port),
        REUSE_PORT_ENV: "1",
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
    }
    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "services.gateway"], env=env)

    procs = [spawn() for _ in range(workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("gateway: %d workers on port %d (pids %s)", workers, port,
             ", ".join(str(p.pid) for p in procs))
    codes: list[int] = []
    try:
        while procs:
            time.sleep(0.2)
            for index, proc in enumerate(list(procs)):
                code = proc.poll()
                if code is None:
                    continue
                if stopping:
                    procs.remove(proc)
                    codes.append(code)
                    continue
                log.error("gateway worker %d exited with %d; restarting it", proc.pid, code)
                _forget(metrics_dir, proc.pid)
                time.sleep(RESTART_DELAY_S)
                procs[index] = spawn()
    finally:
        for proc in procs:
            proc.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return max(codes, default=0)


def _forget(metrics_dir: str, pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: they are history)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
