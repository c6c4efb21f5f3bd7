"""Event contracts: envelope, keys, aliases, tolerant reading, schemas."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from shared.domain import AlertStatus, Severity
from shared.events import (
    EVENT_TYPES,
    AlertReceived,
    EscalationTriggered,
    Event,
    IncidentClassified,
    IncidentOpened,
    IncidentUpdated,
    ReportPublished,
    StatusUpdated,
    derive_event_id,
    json_schemas,
    parse_event,
)
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

    def test_derived_ids_set_version_and_variant_for_every_digest(self) -> None:
        """Over many parts every variant nibble occurs, and each id is still uuid5's."""
        namespace = uuid.UUID("5b0c1c8e-6d0e-4b6a-9a55-9b1d2f0e7a11")
        variants = set()
        for n in range(2000):
            derived = derive_event_id("alert.received", n)
            assert derived == str(uuid.uuid5(namespace, f"alert.received\x1f{n}"))
            variants.add(derived[19])
        assert variants == set("89ab")

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

    def test_max_partitions_caps_every_topic(self) -> None:
        """The embedded broker's layout: no topic above the cap, smaller ones as they are."""
        for cap in (1, 2, 6):
            specs = {name: parts for name, parts, _ in all_topic_specs("p.", cap)}
            for topic, spec in CATALOG.items():
                assert specs[f"p.{topic.value}"] == min(cap, spec.partitions)
                assert specs[f"p.{topic.value}.dlq"] == 1


def _alert_fields(rng: random.Random) -> dict[str, Any]:
    """Every AlertReceived field, in declaration order, with awkward values."""
    def text() -> str:
        alphabet = 'ab "\\/\n\t\x00\x1f\x7fé✓😀</script>\u2028'
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))

    def when() -> datetime | None:
        if rng.random() < 0.2:
            return None
        offset = timezone(timedelta(minutes=rng.choice([0, 0, 60, -330, 345, 14 * 60])))
        return datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28),
                        rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                        rng.choice([0, 5000, 123456, 999999]), tzinfo=offset)

    return {
        "event_id": text(), "event_type": "alert.received", "schema_version": 1,
        "occurred_at": when() or datetime(2026, 11, 21, tzinfo=UTC), "producer": text(),
        "incident_id": rng.choice([None, text()]), "correlation_id": text(),
        "causation_id": rng.choice([None, text()]), "source": text(), "fingerprint": text(),
        "correlation_key": text(), "status": rng.choice(list(AlertStatus)), "name": text(),
        "service": text(), "summary": text(), "description": text(),
        "source_severity": rng.choice([None, text()]),
        "severity": rng.choice([None, *Severity]),
        "labels": {text(): text() for _ in range(rng.randint(0, 4))},
        "annotations": {text(): text() for _ in range(rng.randint(0, 4))},
        "starts_at": when(), "ends_at": when(),
        "received_at": when() or datetime(2026, 11, 21, tzinfo=UTC),
        "generator_url": rng.choice([None, text()]), "dedup_key": rng.choice([None, text()]),
    }


class TestEncoding:
    """`Event.encode`: pydantic's bytes, written by orjson for events with flat fields."""

    def test_hot_events_take_the_fast_path_and_nested_ones_do_not(self) -> None:
        """Alerts, openings and updates (one or two per alert) are flat; models and floats not."""
        flat = {cls for cls in EVENT_TYPES if cls._FLAT}
        assert {AlertReceived, IncidentOpened, IncidentUpdated} <= flat
        assert IncidentClassified not in flat  # a nested BlastRadius
        assert StatusUpdated not in flat  # a float
        assert ReportPublished not in flat  # floats

    @pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.TOPIC.value)
    def test_every_event_encodes_to_pydantics_bytes(self, cls: type[Event]) -> None:
        """The sample, and the sample with awkward strings and offset datetimes, encode alike."""
        event = sample_event(cls)
        awkward: dict[str, Any] = {}
        for name, value in event.__dict__.items():
            if cls.model_fields[name].annotation in (str, str | None):
                awkward[name] = 'é✓😀 "\\ \n\x00</script>\u2028'
            elif isinstance(value, datetime):
                awkward[name] = datetime(2026, 11, 21, 13, 30, 0, 5000,
                                         tzinfo=timezone(timedelta(hours=5, minutes=45)))
        for candidate in (event, cls.model_validate({**event.model_dump(), **awkward})):
            assert candidate.encode() == candidate.model_dump_json().encode()
            assert parse_event(candidate.encode()) == candidate

    def test_an_int_orjson_cannot_write_goes_through_pydantic(self) -> None:
        """Beyond 64 bits orjson refuses; the event still encodes, as pydantic writes it."""
        event = sample_event(EscalationTriggered).model_copy(update={"tier": 2**70})
        assert event.encode() == event.model_dump_json().encode()


class TestAlertEncoding:
    """The gateway's fast paths for alerts: orjson encoding and unvalidated construction."""

    def test_encode_writes_the_same_bytes_as_pydantic(self) -> None:
        """For generated alerts (escapes, unicode, offsets, microseconds) the bytes are equal."""
        rng = random.Random(7)
        for _ in range(500):
            event = AlertReceived(**_alert_fields(rng))
            assert event.encode() == event.model_dump_json().encode()
            assert parse_event(event.encode()) == event

    def test_trusted_equals_the_validated_event(self) -> None:
        """Same fields, same event: equality, field set, bytes and hash of the key."""
        rng = random.Random(11)
        for _ in range(200):
            fields = _alert_fields(rng)
            trusted, validated = AlertReceived.trusted(dict(fields)), AlertReceived(**fields)
            assert trusted == validated
            assert trusted.model_fields_set == validated.model_fields_set
            assert trusted.encode() == validated.model_dump_json().encode()
            assert trusted.partition_key() == validated.partition_key()
            with pytest.raises(ValidationError):
                trusted.name = "changed"  # type: ignore[misc]

    def test_trusted_refuses_missing_unknown_or_reordered_fields(self) -> None:
        """Every field, in declaration order, or a TypeError naming the order."""
        fields = _alert_fields(random.Random(3))
        missing = {k: v for k, v in fields.items() if k != "labels"}
        reordered = {"event_type": fields["event_type"], **fields}
        with pytest.raises(TypeError, match="every field in order"):
            AlertReceived.trusted(missing)
        with pytest.raises(TypeError, match="every field in order"):
            AlertReceived.trusted({**fields, "extra": "x"})
        with pytest.raises(TypeError, match="every field in order"):
            AlertReceived.trusted(reordered)
