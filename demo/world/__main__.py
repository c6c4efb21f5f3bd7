"""Command line of the demo world supervisor: `python -m demo.world --port 9100 ...`.

Runs the control API with uvicorn in the main thread (the service processes
must be spawned from the thread that lives as long as the supervisor, see
`demo.world.supervisor`). SIGTERM and SIGINT stop the API, whose shutdown stops
every service process; a `finally` kills whatever is left, and the children
also watch their parent, so none outlives the supervisor even on SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

import uvicorn

from demo.world.supervisor import DEFAULT_CATALOG, World, WorldOptions, create_app


def parse_args(argv: list[str] | None = None) -> WorldOptions:
    """Parse the supervisor's command line into options."""
    d = WorldOptions()
    p = argparse.ArgumentParser(
        prog="python -m demo.world",
        description="Run the simulated production system of the demo.",
    )
    p.add_argument("--port", type=int, default=d.port, help="control API port")
    p.add_argument("--host", default=d.host, help="control API bind address")
    p.add_argument("--state-dir", type=Path, default=d.state_dir, help="logs live in <dir>/logs")
    p.add_argument("--redis-url", default=d.redis_url)
    p.add_argument("--redis-prefix", default=d.redis_prefix, help="cache keys: <prefix>cache:*")
    p.add_argument("--alert-webhook", default=None, help="Alertmanager-style receiver URL")
    p.add_argument("--alert-token", default=None, help="sent as Authorization: Bearer TOKEN")
    p.add_argument("--traffic-rps", type=float, default=d.traffic_rps, help="0 disables traffic")
    p.add_argument(
        "--window-seconds",
        type=float,
        default=d.window_seconds,
        help="sliding window of error rates",
    )
    p.add_argument(
        "--eval-interval",
        type=float,
        default=d.eval_interval,
        help="scrape and alert-rule interval",
    )
    p.add_argument(
        "--alert-for",
        type=int,
        default=d.alert_for,
        help="consecutive evaluations before firing / resolving",
    )
    p.add_argument("--alert-repeat-seconds", type=float, default=d.alert_repeat_seconds)
    p.add_argument("--alert-threshold", type=float, default=d.alert_threshold)
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="service catalog YAML")
    p.add_argument("--bad-error-rate", type=float, default=d.bad_error_rate)
    p.add_argument("--error-spike-seconds", type=float, default=d.error_spike_seconds)
    p.add_argument("--error-spike-rate", type=float, default=d.error_spike_rate)
    p.add_argument("--log-level", default=d.log_level, help="initial log level of services")
    p.add_argument("--pool-size", type=int, default=d.pool_size, help="db pool size (leak)")
    p.add_argument(
        "--summary-seconds",
        type=float,
        default=d.summary_seconds,
        help="interval of the services' INFO traffic summaries",
    )
    p.add_argument("--external-url", default=None, help="URL of this API in alert payloads")
    a = p.parse_args(argv)
    return WorldOptions(
        port=a.port,
        host=a.host,
        state_dir=a.state_dir,
        redis_url=a.redis_url,
        redis_prefix=a.redis_prefix,
        alert_webhook=a.alert_webhook,
        alert_token=a.alert_token,
        traffic_rps=a.traffic_rps,
        window_seconds=a.window_seconds,
        eval_interval=a.eval_interval,
        alert_for=a.alert_for,
        alert_repeat_seconds=a.alert_repeat_seconds,
        alert_threshold=a.alert_threshold,
        catalog_path=a.catalog,
        bad_error_rate=a.bad_error_rate,
        error_spike_seconds=a.error_spike_seconds,
        error_spike_rate=a.error_spike_rate,
        log_level=a.log_level,
        pool_size=a.pool_size,
        summary_seconds=a.summary_seconds,
        external_url=a.external_url,
    )


def _ignore(_signum: int, _frame: object) -> None:
    """Uvicorn re-raises the signal it shut down on; by then the work is done."""


def main(argv: list[str] | None = None) -> int:
    """Run the supervisor until SIGTERM/SIGINT; returns the exit code."""
    opts = parse_args(argv)
    try:  # fail before spawning five processes when the API port is taken
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((opts.host, opts.port))
    except OSError as exc:
        print(f"demo.world: cannot listen on {opts.host}:{opts.port}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    app = create_app(opts)
    world: World = app.state.world
    config = uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    try:
        asyncio.run(server.serve())
    finally:
        world.kill_all()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
