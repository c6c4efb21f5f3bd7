"""Record what a running demo world answers, as a fixture case for the investigator's unit tests.

Usage: `python tests/unit/investigator_cases/record.py <world_url> <case_name> [fault service]`.
Injects the fault (unless "none"), waits until the supervisor reports errors or a
stopped service, then saves every answer the evidence sources read:
`services.json`, `status.json`, `deploys.json`, `logs/<svc>.errors.json`,
`logs/<svc>.sample.json`, `metrics/<svc>.1.txt` and `.2.txt` (one second
apart), and `meta.json` (fault time, first anomaly and recording time).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx


def main() -> None:
    """Record one case."""
    world, name = sys.argv[1].rstrip("/"), sys.argv[2]
    kind = sys.argv[3] if len(sys.argv) > 3 else "none"
    target = sys.argv[4] if len(sys.argv) > 4 else ""
    out = Path(__file__).parent / name
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "metrics").mkdir(parents=True, exist_ok=True)
    client = httpx.Client(timeout=10)
    injected = datetime.now(UTC)
    if kind != "none":
        client.post(f"{world}/faults/{kind}", json={"service": target}).raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(f"{world}/status").json()
        if any(s["error_rate"] > 0.2 or not s["up"] for s in status.values()) or kind == "none":
            break
        time.sleep(0.5)
    time.sleep(3)
    anomaly = injected + timedelta(seconds=2)
    since = (anomaly - timedelta(minutes=30)).isoformat()
    services = client.get(f"{world}/services").json()
    (out / "services.json").write_text(json.dumps(services, indent=1))
    (out / "status.json").write_text(json.dumps(client.get(f"{world}/status").json(), indent=1))
    (out / "deploys.json").write_text(json.dumps(client.get(f"{world}/deploys").json(), indent=1))
    for svc in services:
        n = svc["name"]
        errors = client.get(f"{world}/logs/{n}",
                            params={"since": since, "limit": 100, "level": "ERROR"}).json()
        sample = client.get(f"{world}/logs/{n}", params={"since": since, "limit": 300}).json()
        (out / "logs" / f"{n}.errors.json").write_text(json.dumps(errors, indent=1))
        (out / "logs" / f"{n}.sample.json").write_text(json.dumps(sample, indent=1))
    for round_ in (1, 2):
        for svc in services:
            try:
                text = client.get(svc["metrics_url"]).text
            except httpx.TransportError:
                continue
            (out / "metrics" / f"{svc['name']}.{round_}.txt").write_text(text)
        time.sleep(1)
    meta = {"fault": kind, "service": target, "injected_at": injected.isoformat(),
            "first_anomaly_at": anomaly.isoformat(), "recorded_at": datetime.now(UTC).isoformat()}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
