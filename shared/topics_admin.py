"""Explicit creation of the catalog's topics (and their DLQs) on any Kafka-protocol broker.

Why explicit: broker-side auto-creation ignores the catalog (Tansu makes 4 partitions
whatever was wanted, Apache Kafka uses ``num.partitions``), and the partition count of
a keyed topic fixes which incident lands where. It cannot be changed later on Tansu
(``create_partitions`` is not supported), so topics must exist before anything
produces or subscribes.

Decisions:

- One ``CreateTopics`` request for every missing topic, replication factor 1 by
  default (the embedded broker and the single-broker compose file); a production
  cluster passes ``replication_factor``.
- Retention goes in as ``retention.ms``. Tansu accepts and ignores it; if a broker
  rejects the config (``InvalidConfig``), the topic is created again without it.
- ``TopicAlreadyExists`` is success: creation is idempotent and several services
  may race to create the same topics at start-up.
- On return, every topic is visible in metadata with its partitions (polled with a
  deadline), so callers can subscribe immediately. A pre-existing topic with a
  different partition count is logged, not "fixed": that would reshuffle keys.
- ``security`` takes aiokafka's client keyword arguments (``security_protocol``,
  ``ssl_context``, ``sasl_mechanism``, ``sasl_plain_username``,
  ``sasl_plain_password``); the ``KafkaSettings`` spellings (``sasl_username``,
  ``sasl_password``, ``ssl_cafile``, ``ssl_certfile``, ``ssl_keyfile``) are accepted
  too and translated. ``None`` values are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

from shared.topics import all_topic_specs

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_INVALID_CONFIG = 40
_ADMIN_KEYS = {
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "sasl_oauth_token_provider",
    "client_id",
    "request_timeout_ms",
}
_RENAMED = {"sasl_username": "sasl_plain_username", "sasl_password": "sasl_plain_password"}
_SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic, or it did not appear in time."""


def admin_client_kwargs(security: dict[str, Any] | None) -> dict[str, Any]:
    """Translate a ``security`` mapping into AIOKafkaAdminClient keyword arguments."""
    out: dict[str, Any] = {}
    ssl_files: dict[str, Any] = {}
    for key, value in (security or {}).items():
        if value is None:
            continue
        if key in _SSL_FILES:
            ssl_files[key.removeprefix("ssl_")] = value
        elif key in _RENAMED:
            out[_RENAMED[key]] = value
        elif key in _ADMIN_KEYS:
            out[key] = value
        else:
            raise TypeError(f"unsupported Kafka security option: {key!r}")
    if ssl_files and "ssl_context" not in out:
        out["ssl_context"] = create_ssl_context(**ssl_files)
    return out


def _new_topic(
    name: str, partitions: int, retention_ms: int, *, rf: int, configs: bool
) -> NewTopic:
    topic_configs = {"retention.ms": str(retention_ms)} if configs else {}
    return NewTopic(name, partitions, rf, topic_configs=topic_configs)


async def _create(
    admin: AIOKafkaAdminClient, topics: list[NewTopic], timeout_ms: int
) -> dict[str, tuple[int, str | None]]:
    """Send one CreateTopics request; map topic name to (error code, message)."""
    response = await admin.create_topics(topics, timeout_ms=timeout_ms)
    out: dict[str, tuple[int, str | None]] = {}
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out[name] = (code, message)
    return out


async def _wait_visible(
    admin: AIOKafkaAdminClient, wanted: dict[str, int], deadline: float
) -> dict[str, int]:
    """Poll metadata until every wanted topic has partitions; return the partition counts."""
    seen: dict[str, int] = {}
    while True:
        described = await admin.describe_topics(list(wanted))
        seen = {
            t["topic"]: len(t["partitions"])
            for t in described
            if t["error_code"] == 0 and t["partitions"]
        }
        missing = sorted(set(wanted) - set(seen))
        if not missing:
            return seen
        if time.monotonic() > deadline:
            raise TopicCreationError(f"topics not visible in metadata: {missing}")
        await asyncio.sleep(0.1)


async def create_topics(
    bootstrap_servers: str,
    prefix: str = "",
    *,
    security: dict[str, Any] | None = None,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    max_partitions: int | None = None,
) -> list[str]:
    """Create every catalog topic and DLQ under ``prefix``; return the names newly created.

    ``max_partitions`` caps every topic's partition count (the embedded broker's layout).
    """
    specs = all_topic_specs(prefix, max_partitions)
    wanted = {name: partitions for name, partitions, _ in specs}
    deadline = time.monotonic() + timeout_s
    timeout_ms = int(timeout_s * 1000)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, **admin_client_kwargs(security)
    )
    await admin.start()
    try:
        results = await _create(
            admin,
            [_new_topic(n, p, r, rf=replication_factor, configs=True) for n, p, r in specs],
            timeout_ms,
        )
        retry = [s for s in specs if results.get(s[0], (0, None))[0] == _INVALID_CONFIG]
        if retry:
            log.warning("broker rejected retention configs; creating %d topics without", len(retry))
            results.update(
                await _create(
                    admin,
                    [
                        _new_topic(n, p, r, rf=replication_factor, configs=False)
                        for n, p, r in retry
                    ],
                    timeout_ms,
                )
            )
        failed = {
            name: res for name, res in results.items() if res[0] not in (0, _TOPIC_ALREADY_EXISTS)
        }
        if failed:
            raise TopicCreationError(f"could not create topics: {failed}")
        created = [name for name, _, _ in specs if results.get(name, (None, None))[0] == 0]
        partitions = await _wait_visible(admin, wanted, deadline)
    finally:
        await admin.close()
    for name, count in partitions.items():
        if count != wanted[name]:
            log.warning(
                "topic %s has %d partitions, %d wanted", name, count, wanted[name]
            )
    return created
