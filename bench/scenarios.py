"""Load plans: which alert is sent when, and which true incident it belongs to.

A plan is a time-ordered list of `PlannedAlert`s; the load generator plays it
and the harness scores the outcome against the ground truth each alert
carries (`incident`). Design decisions:

- **Storms are cascades with a known answer.** A true incident starts at a
  root service and spreads to services that depend on it (transitively),
  one hop per `cascade_lag_s`. Every true incident lives in a connected
  component of the catalog of its own, so no dependency path of any kind
  links two of them: whatever rule triage uses to call services related
  (one depends on the other, or both on a common service), exactly one
  answer is right, and it does not change when the rule is refined.
- **Detection first, by construction.** A cascade's first alert is on its
  root (the *detection*), and every other alert of that incident is *gated*
  on it: the load generator sends it only once the detection was accepted.
  All alerts of a connected component share a Kafka key, so "accepted
  earlier" means "earlier in the partition" and triage sees the root before
  any dependent. Without the gate, two dependents that do not depend on each
  other could each open an incident before the root arrived: a correct split,
  given the information, that would count against triage unfairly.
- **Repeats, not one-off alerts.** Each alert *condition* (service, alert
  name, instance) fires repeatedly, as Alertmanager re-notifies a firing
  group; the labels (hence the fingerprint) repeat, and only the `bench_id`
  annotation differs, which makes every notification a distinct alert event
  that can be traced through the pipeline.
- **Latency plans separate detections from background.** New incidents open
  at a fixed rate (on services of their own, so they cannot correlate with
  anything) while the rest of the load re-fires already-open conditions. The
  new-incident rate stays the same at 100 and 1,000 alerts/s, so the two runs
  differ only in volume.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.catalog import BenchCatalog

ALERT_NAMES: dict[str, tuple[str, ...]] = {
    "db": ("PostgresReplicationLag", "DatabaseConnectionsExhausted"),
    "cache": ("RedisMemoryHigh", "CacheHitRateLow"),
    "api": ("HighErrorRate", "HighLatencyP99"),
    "web": ("HTTP5xxRatioHigh", "ApdexLow"),
    "queue": ("QueueBacklogGrowing",),
    "worker": ("JobFailureRateHigh", "WorkerCrashLooping"),
    "reports": ("ReportJobLate",),
    "exporter": ("ExporterScrapeFailing",),
}
INSTANCES: dict[str, int] = {
    "db": 2, "cache": 2, "api": 6, "web": 6, "queue": 1, "worker": 4, "reports": 1, "exporter": 1,
}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PlannedAlert:
    """One alert notification of a plan, with its ground truth."""

    bench_id: str
    at: float
    service: str
    name: str
    instance: str
    severity: str
    incident: str
    gate: str | None = None
    detection: bool = False
    starts_at: float = 0.0

    def labels(self) -> dict[str, str]:
        """The alert's identifying labels (what Alertmanager fingerprints)."""
        return {
            "alertname": self.name, "service": self.service, "instance": self.instance,
            "severity": self.severity,
        }

    def fingerprint(self) -> str:
        """A 16-hex label-set hash, as Alertmanager puts in its webhooks."""
        canonical = ",".join(f"{k}={v}" for k, v in sorted(self.labels().items()))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def starts_at_iso(self) -> str:
        """When the condition started, as an RFC 3339 time."""
        return (EPOCH + timedelta(seconds=self.starts_at)).isoformat().replace("+00:00", "Z")

    def to_row(self) -> list[object]:
        """Compact JSON form (one line of a plan file)."""
        return [self.bench_id, self.at, self.service, self.name, self.instance,
                self.severity, self.incident, self.gate, self.detection, self.starts_at]

    @classmethod
    def from_row(cls, row: list[object]) -> PlannedAlert:
        """Inverse of `to_row`."""
        gate = row[7]
        return cls(
            bench_id=str(row[0]), at=float(row[1]), service=str(row[2]),  # type: ignore[arg-type]
            name=str(row[3]), instance=str(row[4]), severity=str(row[5]),
            incident=str(row[6]), gate=None if gate is None else str(gate),
            detection=bool(row[8]), starts_at=float(row[9]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class TrueIncident:
    """One cascade of a storm: its root, the services that alert, when it starts."""

    label: str
    root: str
    services: tuple[str, ...]
    start: float


@dataclass(frozen=True)
class StormSpec:
    """Size and shape of a generated storm."""

    total_alerts: int = 100_000
    duration_s: float = 180.0
    incidents: int = 40
    seed: int = 11
    cascade_lag_s: float = 2.0
    affected_ratio: float = 0.8
    start_spread: float = 0.5


@dataclass(frozen=True)
class Storm:
    """A storm plan and its answer key."""

    spec: StormSpec
    incidents: tuple[TrueIncident, ...]
    alerts: tuple[PlannedAlert, ...]

    def truth(self) -> dict[str, str]:
        """bench_id -> label of the true incident it belongs to."""
        return {a.bench_id: a.incident for a in self.alerts}


@dataclass(frozen=True)
class _Condition:
    incident: int
    service: str
    name: str
    instance: str
    severity: str
    start: float
    detection: bool


def generate_storm(bench: BenchCatalog, spec: StormSpec, *, run_id: str = "s") -> Storm:
    """A cascading-failure storm of exactly `spec.total_alerts` alerts (deterministic in seed)."""
    if spec.duration_s <= 0 or spec.total_alerts <= 0 or spec.incidents <= 0:
        raise ValueError("a storm needs a positive duration, alert count and incident count")
    rng = random.Random(spec.seed)
    roots = _disjoint_roots(bench, spec.incidents, rng)
    lag = min(spec.cascade_lag_s, spec.duration_s / 20)
    incidents: list[TrueIncident] = []
    conditions: list[_Condition] = []
    for number, root in enumerate(roots):
        start = rng.uniform(0, spec.duration_s * spec.start_spread)
        affected = [root, *sorted(
            d for d in bench.dependents[root] if rng.random() < spec.affected_ratio
        )]
        incidents.append(TrueIncident(f"T{number:03d}", root, tuple(affected), start))
        for service in affected:
            conditions.extend(_conditions_of(
                bench, number, service, root=root, start=start, lag=lag, rng=rng,
            ))
    if spec.total_alerts < len(conditions):
        raise ValueError(
            f"{spec.total_alerts} alerts cannot cover the {len(conditions)} alert conditions "
            f"of {spec.incidents} incidents: raise total_alerts or lower incidents"
        )
    counts = _apportion(
        spec.total_alerts, [spec.duration_s - c.start for c in conditions]
    )
    raw: list[tuple[float, _Condition, bool]] = []
    for condition, count in zip(conditions, counts, strict=True):
        span = spec.duration_s - condition.start
        for k in range(count):
            at = condition.start if k == 0 else condition.start + span * (
                k + rng.uniform(-0.4, 0.4)) / count
            raw.append((at, condition, condition.detection and k == 0))
    raw.sort(key=lambda item: (item[0], not item[2]))
    detection_id: dict[int, str] = {}
    alerts: list[PlannedAlert] = []
    for seq, (at, condition, is_detection) in enumerate(raw):
        bench_id = f"{run_id}{seq:07d}"
        if is_detection:
            detection_id[condition.incident] = bench_id
        alerts.append(PlannedAlert(
            bench_id=bench_id, at=at, service=condition.service, name=condition.name,
            instance=condition.instance, severity=condition.severity,
            incident=incidents[condition.incident].label,
            gate=None if is_detection else detection_id[condition.incident],
            detection=is_detection, starts_at=condition.start,
        ))
    return Storm(spec=spec, incidents=tuple(incidents), alerts=tuple(alerts))


@dataclass(frozen=True)
class LatencySpec:
    """Steady load: `rate` alerts/s for `duration_s`, `new_incident_rate` of them detections."""

    rate: float = 100.0
    duration_s: float = 30.0
    new_incident_rate: float = 2.0
    seed: int = 5
    warm_detections: int = 5


def generate_latency_plan(spec: LatencySpec, *, run_id: str = "l") -> list[PlannedAlert]:
    """Detections at a fixed rate on services of their own, the rest re-firing open conditions."""
    if spec.rate <= spec.new_incident_rate or spec.duration_s <= 1:
        raise ValueError("rate must exceed new_incident_rate, and duration must exceed 1 s")
    rng = random.Random(spec.seed)
    detections: list[tuple[float, int]] = [
        (0.05 * k, k) for k in range(spec.warm_detections)
    ]
    count = int(spec.duration_s * spec.new_incident_rate)
    detections += [
        (1.0 + k / spec.new_incident_rate, spec.warm_detections + k) for k in range(count)
    ]
    background = int(spec.duration_s * (spec.rate - spec.new_incident_rate))
    events: list[tuple[float, int, bool]] = [(at, k, True) for at, k in detections]
    for i in range(background):
        at = 1.0 + (spec.duration_s - 1.0) * (i + rng.random()) / background
        eligible = [k for t, k in detections if t <= at - 0.5]
        events.append((at, rng.choice(eligible[-200:]), False))
    events.sort(key=lambda e: (e[0], not e[2]))
    first: dict[int, str] = {}
    started = {k: at for at, k in detections}
    plan: list[PlannedAlert] = []
    for seq, (at, k, is_detection) in enumerate(events):
        bench_id = f"{run_id}{seq:07d}"
        if is_detection:
            first[k] = bench_id
        plan.append(PlannedAlert(
            bench_id=bench_id, at=at, service=f"bench-lat-{run_id}-{k:05d}",
            name="SyntheticCheckFailing", instance="probe-0", severity="critical",
            incident=f"L{k:05d}", gate=None if is_detection else first[k],
            detection=is_detection, starts_at=started[k],
        ))
    return plan


def ingest_alert(seq: int, services: list[str], *, run_id: str = "i") -> PlannedAlert:
    """A distinct alert for the ingest benchmark (unique instance: every one is a new alert)."""
    service = services[seq % len(services)]
    role = service.rsplit("-", 1)[-1]
    names = ALERT_NAMES.get(role, ("HighErrorRate",))
    return PlannedAlert(
        bench_id=f"{run_id}{seq:08d}", at=0.0, service=service, name=names[seq % len(names)],
        instance=f"pod-{seq}", severity="warning" if seq % 3 else "critical",
        incident="", starts_at=float(seq % 3600),
    )


def write_plan(path: Path, alerts: Iterable[PlannedAlert]) -> Path:
    """Write a plan file (JSON lines, time order)."""
    with path.open("w") as out:
        for alert in alerts:
            out.write(json.dumps(alert.to_row(), separators=(",", ":")))
            out.write("\n")
    return path


def read_plan(path: Path) -> Iterator[PlannedAlert]:
    """The alerts of a plan file, in file order; raises ValueError naming a bad line."""
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield PlannedAlert.from_row(json.loads(line))
            except (ValueError, IndexError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a planned alert: {exc}") from exc


def _disjoint_roots(bench: BenchCatalog, wanted: int, rng: random.Random) -> list[str]:
    # Prefer wide cascades (a storm is many services failing together), with enough
    # randomness that narrow incidents and lone services still occur.
    candidates = sorted(
        bench.names, key=lambda n: -min(len(bench.closure(n)), 10) - rng.uniform(0, 8)
    )
    used: set[str] = set()
    roots: list[str] = []
    for root in candidates:
        component = bench.component(root)
        if component in used:
            continue
        roots.append(root)
        used.add(component)
        if len(roots) == wanted:
            return roots
    raise ValueError(
        f"the catalog has {len(roots)} independent components, so at most {len(roots)} "
        f"true incidents; {wanted} were asked for"
    )


def _conditions_of(
    bench: BenchCatalog, incident: int, service: str, *, root: str, start: float,
    lag: float, rng: random.Random,
) -> list[_Condition]:
    role = bench.role(service)
    is_root = service == root
    names = ALERT_NAMES[role] if is_root else ALERT_NAMES[role][: rng.choice((1, 1, 2))]
    depth = bench.depth_from[root][service]
    out: list[_Condition] = []
    for n, name in enumerate(names):
        for i in range(INSTANCES[role]):
            detection = is_root and n == 0 and i == 0
            begin = start if detection else start + lag * (depth + 0.5 + rng.random() * 0.5)
            out.append(_Condition(
                incident=incident, service=service, name=name, instance=f"{service}-{i}",
                severity="critical" if is_root else rng.choice(("warning", "critical")),
                start=begin, detection=detection,
            ))
    return out


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Split total into integers proportional to weights, each at least 1 (largest remainder)."""
    spare = total - len(weights)
    weight_sum = sum(weights) or 1.0
    shares = [spare * w / weight_sum for w in weights]
    counts = [1 + int(s) for s in shares]
    remainder = total - sum(counts)
    by_fraction = sorted(range(len(weights)), key=lambda i: shares[i] - int(shares[i]),
                         reverse=True)
    for i in by_fraction[:remainder]:
        counts[i] += 1
    return counts
