"""The load generator's templated bodies are exactly the alerts the benchmarks describe."""

from __future__ import annotations

import json

import pytest

from bench.catalog import generate_catalog
from bench.payloads import IngestBodies, alertmanager_body, webhook_body
from bench.scenarios import ingest_alert

pytestmark = pytest.mark.unit
SERVICES = generate_catalog().names


@pytest.mark.parametrize("target", ["gateway", "alertmanager"])
@pytest.mark.parametrize(("first", "count"), [(0, 1), (7, 50), (123_456, 500)])
def test_templated_bodies_equal_the_built_ones(target: str, first: int, count: int) -> None:
    """Same labels, annotations, times and fingerprints as webhook_body/alertmanager_body."""
    alerts = [ingest_alert(seq, SERVICES, run_id="g50c8-") for seq in range(first, first + count)]
    built = webhook_body(alerts) if target == "gateway" else alertmanager_body(alerts)
    fast = IngestBodies(target, SERVICES, "g50c8-").body(first, count)
    assert json.loads(fast) == built


def test_words_that_need_escaping_are_refused() -> None:
    """The templates do not escape JSON, so a service name that would need it is refused."""
    with pytest.raises(ValueError, match="escaping"):
        IngestBodies("gateway", ['we"ird'], "r")
