"""Shared test fixtures: one real Kafka-protocol broker per session, isolation by prefix.

Broker choice, in order: ``KAFKA_BOOTSTRAP_SERVERS`` if set (CI, a developer's own
Kafka); testcontainers' Kafka when a Docker engine answers within a second; else the
embedded Tansu broker with memory storage, started once per session. Tests never
restart the shared broker (a memory-broker restart strands clients); they isolate
by topic prefix (``topic_prefix``) and unique group ids instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.topics_admin import create_topics


def _docker_answers() -> bool:
    """True when a Docker engine responds to a ping within about a second."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of the session's broker (env, testcontainers or embedded Tansu)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers < 4.10
            from testcontainers.kafka import KafkaContainer
        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from shared.embedded import EmbeddedBroker

    broker = EmbeddedBroker(memory=True, state_dir=tmp_path_factory.mktemp("broker"))
    with broker:
        yield broker.bootstrap_servers


@pytest.fixture
async def topic_prefix(kafka_bootstrap: str) -> str:
    """A fresh topic prefix (``t<8 hex>.``) with every catalog topic created under it."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, prefix)
    return prefix
