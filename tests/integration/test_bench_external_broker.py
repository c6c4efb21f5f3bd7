"""The benchmarks run against an existing Kafka (`--bootstrap`) with topics of their own."""

from __future__ import annotations

import argparse

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bench import latency

pytestmark = pytest.mark.integration


async def test_latency_runs_on_an_existing_broker_under_a_prefix_of_its_own(
    kafka_bootstrap: str,
) -> None:
    """A short run on the session's broker: every alert triaged and classified, read back
    from topics under a `bench-<ms>.` prefix the run created, and no broker of its own."""
    parser = argparse.ArgumentParser()
    latency.add_arguments(parser)
    args = parser.parse_args([
        "--rates", "20", "--duration", "3", "--no-escalation", "--drain-timeout", "60",
        "--bootstrap", kafka_bootstrap,
    ])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        before = set(await admin.list_topics())
        result = await latency.run_latency(args)
        created = set(await admin.list_topics()) - before
    finally:
        await admin.close()

    assert result["config"]["broker"] == f"kafka at {kafka_bootstrap}"
    run = result["runs"][0]
    assert run["drained"]
    assert run["alerts_accepted"] == run["alerts_planned"] > 0
    assert run["latency"]["to_triaged"]["missing"] == 0
    assert run["latency"]["to_classified"]["missing"] == 0
    assert run["latency"]["to_triaged"]["from_sent_ms"]["count"] == run["alerts_accepted"]
    assert "broker-tansu" not in run["processes"]
    prefixes = {name.split(".", 1)[0] for name in created if name.startswith("bench-")}
    assert len(prefixes) == 1
    assert f"{prefixes.pop()}.alert.received" in created
