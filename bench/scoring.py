"""Scoring: the pipeline's answer against the generator's ground truth (pure functions).

Storm quality is measured per alert, because "an alert folded into the right
incident" is the product's promise:

- **Loss and duplicates.** Every accepted alert (202 from the gateway, event
  id from its answer) must be in exactly one incident: `lost` are in none,
  `duplicated` in more than one. `missing_from_log` are accepted alerts the
  tail never saw on `alert.received` (gateway-level loss).
- **Clustering.** B-cubed precision and recall (Bagga & Baldwin 1998): for
  each alert, the share of its incident that belongs to its true incident
  (precision) and the share of its true incident that landed in its incident
  (recall), averaged over alerts. 1.0/1.0 means incidents and true incidents
  coincide. Unlike pairwise counts, it does not let a few huge incidents
  dominate.
- **Folded right.** Each true incident's *home* is the incident holding most
  of its alerts; an alert is folded right when it is in its true incident's
  home and that home is not dominated by another true incident.
- **Splits and merges.** True incidents spread over several incidents
  (duplicate incidents for one failure) and incidents that mix several true
  incidents (a wrong merge).
- **Compression**: accepted alerts per incident created.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.stats import summarize_ms

#: accepted row from the load generator: bench_id, sent (epoch s), acked (epoch s), event_id
AcceptedRow = Sequence[Any]


@dataclass
class StormScore:
    """How the incidents triage created compare with the true incidents."""

    alerts_accepted: int = 0
    missing_from_log: int = 0
    alerts_triaged: int = 0
    lost: int = 0
    duplicated: int = 0
    true_incidents: int = 0
    incidents_created: int = 0
    split_true_incidents: int = 0
    merged_incidents: int = 0
    bcubed_precision: float = 0.0
    bcubed_recall: float = 0.0
    bcubed_f1: float = 0.0
    folded_right: float = 0.0
    compression_ratio: float = 0.0
    loss_check: str = "fail"
    examples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def score_storm(
    *,
    truth: Mapping[str, str],
    accepted: Mapping[str, str],
    membership: Mapping[str, Mapping[str, float]],
    received: Iterable[str] | None = None,
) -> StormScore:
    """Score the log's membership against truth (bench_id -> true incident label).

    accepted maps bench_id -> the event id the gateway returned for it; received
    (event ids read from `alert.received`), when given, is checked too.
    """
    score = StormScore(alerts_accepted=len(accepted))
    if received is not None:
        seen = set(received)
        missing = [b for b, e in accepted.items() if e not in seen]
        score.missing_from_log = len(missing)
        score.examples["missing_from_log"] = sorted(missing)[:5]
    assigned: dict[str, str] = {}
    lost: list[str] = []
    duplicated: list[str] = []
    for bench_id, event_id in accepted.items():
        incidents = membership.get(event_id, {})
        if not incidents:
            lost.append(bench_id)
            continue
        if len(incidents) > 1:
            duplicated.append(bench_id)
        assigned[bench_id] = min(incidents, key=lambda i: (incidents[i], i))
    score.lost = len(lost)
    score.duplicated = len(duplicated)
    score.alerts_triaged = len(assigned)
    score.examples["lost"] = sorted(lost)[:5]
    score.examples["duplicated"] = sorted(duplicated)[:5]
    score.loss_check = "pass" if not lost and not duplicated and not score.missing_from_log \
        else "fail"

    pairs = Counter((incident, truth[b]) for b, incident in assigned.items())
    incident_size = Counter(assigned.values())
    true_size = Counter(truth[b] for b in assigned)
    score.true_incidents = len({truth[b] for b in accepted})
    score.incidents_created = len(incident_size)
    if assigned:
        n = len(assigned)
        score.bcubed_precision = round(sum(
            pairs[(i, truth[b])] / incident_size[i] for b, i in assigned.items()) / n, 4)
        score.bcubed_recall = round(sum(
            pairs[(i, truth[b])] / true_size[truth[b]] for b, i in assigned.items()) / n, 4)
        p, r = score.bcubed_precision, score.bcubed_recall
        score.bcubed_f1 = round(2 * p * r / (p + r), 4) if p + r else 0.0
        home = _plurality({t: [(i, c) for (i, tt), c in pairs.items() if tt == t]
                           for t in true_size})
        owner = _plurality({i: [(t, c) for (ii, t), c in pairs.items() if ii == i]
                            for i in incident_size})
        right = sum(
            1 for b, i in assigned.items() if home[truth[b]] == i and owner[i] == truth[b]
        )
        score.folded_right = round(right / n, 4)
        score.compression_ratio = round(len(accepted) / len(incident_size), 1)
    splits = Counter(t for (_, t) in pairs)
    merges = Counter(i for (i, _) in pairs)
    score.split_true_incidents = sum(1 for c in splits.values() if c > 1)
    score.merged_incidents = sum(1 for c in merges.values() if c > 1)
    score.examples["split"] = sorted(t for t, c in splits.items() if c > 1)[:5]
    score.examples["merged"] = sorted(i for i, c in merges.items() if c > 1)[:5]
    return score


def _plurality(options: Mapping[str, list[tuple[str, int]]]) -> dict[str, str]:
    return {key: max(choices, key=lambda ic: (ic[1], ic[0]))[0]
            for key, choices in options.items()}


def pipeline_latency(
    *,
    accepted: Sequence[AcceptedRow],
    detections: set[str],
    received: Mapping[str, float],
    membership: Mapping[str, Mapping[str, float]],
    classified_by_alert: Mapping[str, float],
    notified_first: Mapping[str, float],
    classified_seen: Mapping[str, float] | None = None,
    window_s: float = 10.0,
) -> dict[str, Any]:
    """Latency percentiles (ms) from the generator's send time and from the gateway's receipt.

    `from_sent` uses the load generator's own wall clock at the moment it
    posted (ground truth); `from_received` uses the `received_at` the gateway
    stamped on `alert.received` (event timestamps only). The difference is the
    time the request spent reaching the gateway's handler. `seen_from_sent`
    (classification) is when the harness's own consumer read the event: the
    event's timestamp is triage's decision time, before its publish.

    `to_triaged.by_window` splits the triage latency by when the alert was
    sent, window_s at a time: a broker whose cost grows with what it holds
    (Tansu's memory engine) shows as latency climbing over the run.
    """
    seen = classified_seen or {}
    classified_seen_ms: list[float] = []
    accept: list[float] = []
    to_gateway: list[float] = []
    triaged_sent: list[float] = []
    triaged_recv: list[float] = []
    classified_sent: list[float] = []
    classified_recv: list[float] = []
    notified_sent: list[float] = []
    notified_recv: list[float] = []
    untriaged = unclassified = unnotified = 0
    start = min((row[1] for row in accepted), default=0.0)
    windows: dict[int, list[float]] = {}
    for bench_id, sent, acked, event_id in accepted:
        accept.append((acked - sent) * 1000)
        got = received.get(event_id)
        if got is not None:
            to_gateway.append((got - sent) * 1000)
        incidents = membership.get(event_id, {})
        if not incidents:
            untriaged += 1
            continue
        triaged = min(incidents.values())
        triaged_sent.append((triaged - sent) * 1000)
        windows.setdefault(int((sent - start) // window_s), []).append(triaged_sent[-1])
        if got is not None:
            triaged_recv.append((triaged - got) * 1000)
        if bench_id not in detections:
            continue
        classified = classified_by_alert.get(event_id)
        if classified is None:
            unclassified += 1
        else:
            classified_sent.append((classified - sent) * 1000)
            if event_id in seen:
                classified_seen_ms.append((seen[event_id] - sent) * 1000)
            if got is not None:
                classified_recv.append((classified - got) * 1000)
        incident = min(incidents, key=lambda i: incidents[i])
        notified = notified_first.get(incident)
        if notified is None:
            unnotified += 1
        else:
            notified_sent.append((notified - sent) * 1000)
            if got is not None:
                notified_recv.append((notified - got) * 1000)
    return {
        "accept_ms": summarize_ms(accept),
        "sent_to_gateway_ms": summarize_ms(to_gateway),
        "to_triaged": {"from_sent_ms": summarize_ms(triaged_sent),
                       "from_received_ms": summarize_ms(triaged_recv),
                       "missing": untriaged,
                       "by_window": [
                           {"from_s": n * window_s, **summarize_ms(values)}
                           for n, values in sorted(windows.items())
                       ]},
        "to_classified": {"from_sent_ms": summarize_ms(classified_sent),
                          "from_received_ms": summarize_ms(classified_recv),
                          "seen_from_sent_ms": summarize_ms(classified_seen_ms),
                          "missing": unclassified},
        "to_notified": {"from_sent_ms": summarize_ms(notified_sent),
                        "from_received_ms": summarize_ms(notified_recv),
                        "missing": unnotified},
    }
