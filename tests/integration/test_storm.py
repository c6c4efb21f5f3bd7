"""A small alert storm through the real broker, plus the benchmark harness's pure parts.

The integration test plays a generated cascading failure (a few thousand
alerts, a known set of true incidents) through the gateway and triage running
as processes on the session broker, and checks what the event log says:
every accepted alert in exactly one incident, one incident per true incident,
nothing merged, nothing split. The unit tests pin the generator and the
scoring that the test (and `make bench`) rely on: if those were wrong, a
passing storm would mean nothing.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench.catalog import generate_catalog, write_config_dir
from bench.payloads import alertmanager_body, webhook_body
from bench.scenarios import (
    LatencySpec,
    StormSpec,
    generate_latency_plan,
    generate_storm,
    read_plan,
    write_plan,
)
from bench.scoring import pipeline_latency, score_storm
from bench.stats import percentile, summarize_ms
from bench.storm import StormOptions, run_storm
from shared.catalog import ServiceCatalog

STORM_ALERTS = 2_500
STORM_INCIDENTS = 20


@pytest.mark.integration
class TestStormThroughTheRealPipeline:
    """Gateway + triage processes on the real broker, driven by the load generator."""

    async def test_small_storm_loses_nothing_and_finds_each_true_incident_once(
        self, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Every accepted alert lands in exactly one incident; incidents == true incidents."""
        options = StormOptions(
            alerts=STORM_ALERTS, duration_s=8.0, incidents=STORM_INCIDENTS, seed=3,
            batch=50, concurrency=8, drain_timeout_s=90.0, idle_timeout_s=30.0,
        )
        result = await run_storm(
            options, work=tmp_path, bootstrap=kafka_bootstrap, topic_prefix=topic_prefix
        )
        score = result["score"]
        assert result["ingest"]["alerts_accepted"] == STORM_ALERTS, result["ingest"]
        assert score["alerts_accepted"] == STORM_ALERTS
        assert score["missing_from_log"] == 0, score["examples"]
        assert score["lost"] == 0, score["examples"]
        assert score["duplicated"] == 0, score["examples"]
        assert score["loss_check"] == "pass"
        assert score["true_incidents"] == STORM_INCIDENTS
        assert score["incidents_created"] == STORM_INCIDENTS, score["examples"]
        assert score["split_true_incidents"] == 0, score["examples"]
        assert score["merged_incidents"] == 0, score["examples"]
        assert score["folded_right"] == 1.0
        assert result["incidents_opened_total"] == STORM_INCIDENTS
        assert result["opened_records"] == STORM_INCIDENTS, "an incident was opened twice"
        assert result["drain"]["drained"] is True


@pytest.mark.unit
class TestGeneratedCatalog:
    """The 200-service catalog the benchmarks run on."""

    def test_has_200_services_and_only_known_dependencies(self) -> None:
        """200 uniquely named services; every dependency names a catalogued service."""
        bench = generate_catalog()
        names = bench.names
        assert len(names) == 200
        assert len(set(names)) == 200
        for service in bench.catalog.services:
            assert set(service.depends_on) <= set(names)

    def test_is_deterministic_in_its_seed(self) -> None:
        """The harness and the load generator rebuild the same catalog from the seed."""
        assert generate_catalog(seed=4).catalog == generate_catalog(seed=4).catalog

    def test_config_dir_holds_a_catalog_services_can_load(self, tmp_path: Path) -> None:
        """The written catalog.yaml loads back as the same catalog, next to the demo's files."""
        bench = generate_catalog()
        config = write_config_dir(tmp_path / "config", bench)
        assert ServiceCatalog.load(config / "catalog.yaml") == bench.catalog
        assert (config / "oncall.yaml").is_file()


@pytest.mark.unit
class TestStormScenario:
    """The storm generator's ground truth is unambiguous."""

    def test_has_exactly_the_requested_alerts_and_incidents(self) -> None:
        """Exact alert count, one detection per true incident, time-ordered plan."""
        storm = generate_storm(generate_catalog(), StormSpec(total_alerts=3_000, incidents=12,
                                                             duration_s=20))
        assert len(storm.alerts) == 3_000
        assert len(storm.incidents) == 12
        assert sum(a.detection for a in storm.alerts) == 12
        times = [a.at for a in storm.alerts]
        assert times == sorted(times)
        assert all(0 <= t < 20 for t in times)

    def test_every_alert_waits_for_the_detection_of_its_own_incident(self) -> None:
        """Non-detections are gated on an earlier detection on the root of the same incident."""
        storm = generate_storm(generate_catalog(), StormSpec(total_alerts=2_000, incidents=10))
        by_id = {a.bench_id: a for a in storm.alerts}
        roots = {i.label: i.root for i in storm.incidents}
        for alert in storm.alerts:
            if alert.detection:
                assert alert.gate is None
                assert alert.service == roots[alert.incident]
                continue
            gate = by_id[alert.gate or ""]
            assert gate.detection
            assert gate.incident == alert.incident
            assert gate.at <= alert.at

    def test_no_service_of_one_incident_is_related_to_another_incidents(self) -> None:
        """By the product's own relation (ServiceCatalog.related), true incidents are apart."""
        bench = generate_catalog()
        storm = generate_storm(bench, StormSpec(total_alerts=2_000, incidents=30))
        for a, b in itertools.combinations(storm.incidents, 2):
            for x, y in itertools.product(a.services, b.services):
                assert not bench.catalog.related(x, y), (a.label, x, b.label, y)

    def test_refuses_more_incidents_than_independent_components(self) -> None:
        """Asking for more true incidents than the catalog can hold apart is a clear error."""
        with pytest.raises(ValueError, match="at most"):
            generate_storm(generate_catalog(), StormSpec(total_alerts=10_000, incidents=500))

    def test_refuses_fewer_alerts_than_alert_conditions(self) -> None:
        """Every condition fires at least once, so too few alerts is an error, not a truncation."""
        with pytest.raises(ValueError, match="cannot cover"):
            generate_storm(generate_catalog(), StormSpec(total_alerts=10, incidents=10))

    def test_plan_file_round_trips(self, tmp_path: Path) -> None:
        """What the harness writes is what the load generator reads."""
        storm = generate_storm(generate_catalog(), StormSpec(total_alerts=500, incidents=5))
        path = write_plan(tmp_path / "plan.jsonl", storm.alerts)
        assert tuple(read_plan(path)) == storm.alerts

    def test_a_broken_plan_line_is_reported_with_its_line_number(self, tmp_path: Path) -> None:
        """Bad input gets a clear error naming the file and line."""
        path = tmp_path / "plan.jsonl"
        path.write_text('["a", 0.0]\n')
        with pytest.raises(ValueError, match=r"plan.jsonl:1"):
            list(read_plan(path))


@pytest.mark.unit
class TestLatencyPlan:
    """Steady-load plans: detections at a fixed rate, repeats of open conditions."""

    def test_repeats_share_their_detections_fingerprint_and_wait_for_it(self) -> None:
        """A repeat re-fires its detection's condition (same fingerprint), after it."""
        plan = generate_latency_plan(LatencySpec(rate=200, duration_s=5, new_incident_rate=4))
        by_id = {a.bench_id: a for a in plan}
        assert len(plan) == 1_000 + 5  # rate x duration, plus the warm-up detections
        for alert in plan:
            if alert.detection:
                continue
            detection = by_id[alert.gate or ""]
            assert detection.fingerprint() == alert.fingerprint()
            assert detection.at < alert.at

    def test_detection_rate_does_not_depend_on_the_load(self) -> None:
        """100/s and 1,000/s open the same number of incidents (they differ only in volume)."""
        low = generate_latency_plan(LatencySpec(rate=100, duration_s=10))
        high = generate_latency_plan(LatencySpec(rate=1_000, duration_s=10))
        assert sum(a.detection for a in low) == sum(a.detection for a in high)


@pytest.mark.unit
class TestPayloads:
    """Both receivers get the same alerts, each in its own format."""

    def test_webhook_and_alertmanager_bodies_carry_the_same_alerts(self) -> None:
        """Same labels and annotations; the webhook adds status and Alertmanager's fingerprint."""
        storm = generate_storm(generate_catalog(), StormSpec(total_alerts=300, incidents=3))
        alerts = list(storm.alerts[:5])
        webhook = webhook_body(alerts)
        api = alertmanager_body(alerts)
        assert [a["labels"] for a in webhook["alerts"]] == [a["labels"] for a in api]
        assert [a["annotations"]["bench_id"] for a in api] == [a.bench_id for a in alerts]
        assert all(a["status"] == "firing" for a in webhook["alerts"])
        assert [a["fingerprint"] for a in webhook["alerts"]] == [a.fingerprint() for a in alerts]


@pytest.mark.unit
class TestStormScoring:
    """Scoring against the ground truth."""

    TRUTH = {"a1": "T1", "a2": "T1", "a3": "T1", "b1": "T2", "b2": "T2"}
    ACCEPTED = {k: f"e-{k}" for k in TRUTH}

    def _membership(self, assignment: dict[str, str]) -> dict[str, dict[str, float]]:
        return {f"e-{k}": {v: 1.0} for k, v in assignment.items()}

    def test_perfect_answer_scores_one_and_passes_the_loss_check(self) -> None:
        """Incidents equal to true incidents: precision = recall = 1, compression 2.5."""
        score = score_storm(
            truth=self.TRUTH, accepted=self.ACCEPTED,
            membership=self._membership({"a1": "I1", "a2": "I1", "a3": "I1",
                                         "b1": "I2", "b2": "I2"}),
            received=self.ACCEPTED.values(),
        )
        assert (score.bcubed_precision, score.bcubed_recall, score.folded_right) == (1, 1, 1)
        assert score.incidents_created == score.true_incidents == 2
        assert score.compression_ratio == 2.5
        assert score.loss_check == "pass"

    def test_a_merge_costs_precision_not_recall(self) -> None:
        """Everything in one incident: recall stays 1, precision drops, one merged incident."""
        score = score_storm(
            truth=self.TRUTH, accepted=self.ACCEPTED,
            membership=self._membership(dict.fromkeys(self.TRUTH, "I1")),
        )
        assert score.bcubed_recall == 1.0
        assert score.bcubed_precision == pytest.approx((3 * 3 / 5 + 2 * 2 / 5) / 5, abs=1e-4)
        assert score.merged_incidents == 1
        assert score.split_true_incidents == 0

    def test_a_split_costs_recall_not_precision(self) -> None:
        """A true incident over two incidents: precision 1, recall drops, one split."""
        score = score_storm(
            truth=self.TRUTH, accepted=self.ACCEPTED,
            membership=self._membership({"a1": "I1", "a2": "I1", "a3": "I3",
                                         "b1": "I2", "b2": "I2"}),
        )
        assert score.bcubed_precision == 1.0
        assert score.bcubed_recall < 1.0
        assert score.split_true_incidents == 1
        assert score.folded_right == pytest.approx(4 / 5)

    def test_lost_duplicated_and_unlogged_alerts_fail_the_loss_check(self) -> None:
        """An alert in no incident, one in two, one never on alert.received: all reported."""
        membership = self._membership({"a1": "I1", "a2": "I1", "b1": "I2", "b2": "I2"})
        membership["e-a1"]["I2"] = 2.0
        score = score_storm(
            truth=self.TRUTH, accepted=self.ACCEPTED, membership=membership,
            received=[e for e in self.ACCEPTED.values() if e != "e-b2"],
        )
        assert score.lost == 1
        assert score.examples["lost"] == ["a3"]
        assert score.duplicated == 1
        assert score.missing_from_log == 1
        assert score.loss_check == "fail"


@pytest.mark.unit
class TestLatencyFigures:
    """Latency joins of generator timestamps with event timestamps."""

    def test_stages_are_measured_from_the_send_time_and_from_receipt(self) -> None:
        """Detections get classified/notified figures; repeats only accept and triage."""
        accepted = [["d1", 100.0, 100.010, "e1"], ["r1", 100.5, 100.520, "e2"]]
        figures = pipeline_latency(
            accepted=accepted, detections={"d1"},
            received={"e1": 100.005, "e2": 100.505},
            membership={"e1": {"I1": 100.105}, "e2": {"I1": 100.705}},
            classified_by_alert={"e1": 100.105}, notified_first={"I1": 100.305},
        )
        assert figures["accept_ms"]["p50"] == pytest.approx(15.0)
        assert figures["to_triaged"]["from_sent_ms"]["max"] == pytest.approx(205.0)
        assert figures["to_classified"]["from_sent_ms"]["count"] == 1
        assert figures["to_classified"]["from_received_ms"]["p50"] == pytest.approx(100.0)
        assert figures["to_notified"]["from_sent_ms"]["p50"] == pytest.approx(305.0)
        assert figures["to_notified"]["missing"] == 0

    def test_percentiles_interpolate_and_tolerate_no_data(self) -> None:
        """Linear interpolation between ranks; an empty series has no percentiles."""
        assert percentile([1, 2, 3, 4], 50) == 2.5
        assert percentile([5], 99) == 5
        assert percentile([], 50) is None
        assert summarize_ms([]) == {"count": 0, "p50": None, "p95": None, "p99": None,
                                    "max": None}
