"""Explicit topic creation gives every catalog topic its catalog partition count."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from shared.topics import CATALOG, all_topic_specs, topic_name
from shared.topics_admin import create_topics

pytestmark = pytest.mark.integration


async def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    """The partition count of every named topic that exists, from the broker's metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


async def test_catalog_partition_counts(kafka_bootstrap: str, topic_prefix: str) -> None:
    """Every topic and DLQ under the fixture's prefix has the catalog's partition count."""
    wanted = {name: partitions for name, partitions, _ in all_topic_specs(topic_prefix)}
    actual = await partition_counts(kafka_bootstrap, list(wanted))
    assert actual == wanted
    # Sanity on the catalog itself: the keyed alert topic is not Tansu's default of 4.
    assert wanted[topic_name(next(iter(CATALOG)), topic_prefix)] == 12

    # What a producer partitions keys over (its own metadata path, not the admin's).
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for name, partitions in wanted.items():
            assert await producer.partitions_for(name) == set(range(partitions))
    finally:
        await producer.stop()


async def test_create_topics_is_idempotent(kafka_bootstrap: str) -> None:
    """The first call returns every name it created; a second call creates nothing."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    names = [name for name, _, _ in all_topic_specs(prefix)]
    assert sorted(await create_topics(kafka_bootstrap, prefix)) == sorted(names)
    assert await create_topics(kafka_bootstrap, prefix) == []


async def test_max_partitions_caps_every_topic(kafka_bootstrap: str) -> None:
    """The embedded broker's layout: every topic created with at most max_partitions."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, prefix, max_partitions=2)
    wanted = {name: partitions for name, partitions, _ in all_topic_specs(prefix)}
    actual = await partition_counts(kafka_bootstrap, list(wanted))
    assert actual == {name: min(2, partitions) for name, partitions in wanted.items()}
    assert actual[topic_name(next(iter(CATALOG)), prefix)] == 2  # alert.received: 12 in Kafka
