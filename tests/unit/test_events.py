"""Event contracts: envelope, keys, aliases, tolerant reading, schemas."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from shared.domain import Severity
from shared.events import EVENT_TYPES, AlertReceived, derive_event_id, json_schemas, parse_event
from shared.topics import CATALOG, LIFECYCLE_TOPICS, Topic, all_topic_specs
from tests.samples import PAYLOADS, sample_event

pytestmark = pytest.mark.unit


class TestEnvelope:
    def test_every_event_type_has_a_sample_and_a_topic(self) -> None:
        """Each of the catalogued topics has exactly one event model."""
        assert set(PAYLOADS) == set(EVENT_TYPES)
        assert {cls.TOPIC for cls in EVENT_TYPES} == set(Topic)

    @pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.TOPIC.value)
    def test_json_round_trip_is_lossless(self, cls: type) -> None:
        """parse_event(model_dump_json()) gives back an equal, frozen event."""
        event = sample_event(cls)
        again = parse_event(event.model_dump_json())
        assert again == event
        assert type(again) is cls
        with pytest.raises(ValidationError):
            again.event_id = "changed"  # type: ignore[misc]

    def test_lifecycle_events_are_keyed_by_incident(self) -> None:
        """Lifecycle events key by incident_id; alerts by their correlation key."""
        for cls in EVENT_TYPES:
            event = sample_event(cls)
            expected = event.correlation_key if cls is AlertReceived else event.incident_id
            assert event.partition_key() == str(expected).encode()
        assert Topic.ALERT_RECEIVED not in LIFECYCLE_TOPICS

    def test_unknown_fields_are_ignored(self) -> None:
        """A newer producer's extra fields do not break an older consumer."""
        raw = json.loads(sample_event(AlertReceived).model_dump_json())
        raw["added_in_a_later_version"] = {"x": 1}
        assert parse_event(json.dumps(raw)).event_type == "alert.received"

    def test_invalid_event_names_the_field(self) -> None:
        """A contract violation says which field is wrong."""
        raw = json.loads(sample_event(AlertReceived).model_dump_json())
        raw["status"] = "exploded"
        with pytest.raises(ValidationError, match="status"):
            parse_event(json.dumps(raw))

    def test_derived_ids_are_deterministic(self) -> None:
        """A retry derives the same id; different causes derive different ids."""
        assert derive_event_id("a", 1) == derive_event_id("a", 1)
        assert derive_event_id("a", 1) != derive_event_id("a", 2)

    @pytest.mark.parametrize("parts", [
        ("alert.received", "alertmanager", "c6eadffa33fcdf37", "firing", "0" * 64, 29_650_000),
        ("alert.correlation", "grafana", "fp"),
        ("", None, 1.5, "payé ✓", "\x1f"),
        (),
    ])
    def test_derived_ids_are_rfc4122_uuid5(self, parts: tuple[object, ...]) -> None:
        """The fast derivation is byte for byte uuid5 over the joined parts (ids stay stable)."""
        namespace = uuid.UUID("5b0c1c8e-6d0e-4b6a-9a55-9b1d2f0e7a11")
        expected = uuid.uuid5(namespace, "\x1f".join(str(p) for p in parts))
        assert derive_event_id(*parts) == str(expected)
        assert uuid.UUID(derive_event_id(*parts)).version == 5

    def test_json_schema_for_every_event(self) -> None:
        """irctl schemas has a schema with the envelope for every event type."""
        schemas = json_schemas()
        assert set(schemas) == {t.value for t in Topic}
        for schema in schemas.values():
            assert {"event_id", "event_type", "occurred_at", "correlation_id"} <= set(
                schema["properties"]
            )


class TestSeverity:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("SEV0", "SEV0"), ("sev 2", "SEV2"), ("P0", "SEV0"), ("P3", "SEV3"),
         ("SEV-1", "SEV0"), ("SEV-4", "SEV3"), ("critical", "SEV0"), ("warning", "SEV2"),
         ("info", "SEV4")],
    )
    def test_aliases(self, raw: str, expected: str) -> None:
        """Seed aliases map to SEV0..SEV4 (SEV-1 of seed 002 is our SEV0)."""
        assert Severity.parse(raw) == Severity(expected)

    def test_unknown_alias_is_none(self) -> None:
        """An unrecognised word is not guessed."""
        assert Severity.parse("purple") is None

    def test_order(self) -> None:
        """SEV0 is worse than SEV1; labels follow the matrix."""
        assert Severity.SEV0.is_worse_than(Severity.SEV1)
        assert Severity.SEV4.label == "Informational"


class TestCatalog:
    def test_every_topic_has_a_dlq_and_spec(self) -> None:
        """Topic creation covers every topic and its DLQ with the catalog's partitions."""
        specs = {name: parts for name, parts, _ in all_topic_specs("p.")}
        for topic, spec in CATALOG.items():
            assert specs[f"p.{topic.value}"] == spec.partitions
            assert f"p.{topic.value}.dlq" in specs
