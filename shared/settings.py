"""Settings shared by every service, read from the environment in each factory.

Kafka settings use the `IR_KAFKA_` prefix and fall back to the conventional
`KAFKA_BOOTSTRAP_SERVERS`; service settings use `IR_`. Each service adds its
own settings class with its own prefix (e.g. `IR_TRIAGE_`). Nothing here is
read at import time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster (any Kafka: Tansu, Apache Kafka, MSK, Redpanda)."""

    model_config = SettingsConfigDict(env_prefix="IR_KAFKA_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(  # type: ignore[pydantic-alias]
        "127.0.0.1:9092",
        validation_alias=AliasChoices("IR_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    topic_prefix: str = Field("", description="prepended to every topic name (tests, tenants)")
    group_prefix: str = Field("", description="prepended to every consumer group id")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Tansu joins a group after about half the session timeout: keep it short locally.
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    # How long the broker may hold a fetch that found nothing. Tansu does not
    # wake a waiting fetch when records arrive, so this is also the delivery
    # latency floor of every consumer hop on it; and each fetch costs it CPU per
    # partition (three idle consumers of every topic at 50 ms: 0.7 core) and,
    # on its memory engine, per record batch already in every partition that
    # has news for it (~0.65 us each: a fetch late in a 1,000 alerts/s run
    # costs milliseconds). Hot subscriptions use fetch_max_wait_ms. Background
    # ones, which only keep state (triage's echo of its own lifecycle events;
    # incident.updated in escalation, approval and the reporter), wait
    # background_fetch_max_wait_ms and, while they keep up, handle at most one
    # batch per that interval: a few fetches a second however busy the topic,
    # not one per handled batch. (Not min_bytes: Tansu re-reads every partition
    # with news a few times during such a hold, each time listing its batches.)
    fetch_max_wait_ms: int = Field(100, ge=1)
    background_fetch_max_wait_ms: int = Field(500, ge=1)
    max_attempts: int = Field(3, ge=1, description="handler attempts before the DLQ")
    retry_backoff_s: float = 0.2
    request_timeout_ms: int = 30000
    # aiokafka's default 16 KB batch makes hundreds of concurrent sends queue on
    # "batch full, wait for drain" and retry: quadratic for a 500-alert webhook.
    producer_batch_bytes: int = Field(512 * 1024, ge=16 * 1024)
    producer_linger_ms: int = Field(0, ge=0)
    # Codec of every record batch produced (Kafka's `compression.type`; consumers
    # decompress by themselves). Events are JSON and a batch's records share most
    # of their bytes. Measured on the ingest benchmark (Tansu, interleaved runs):
    # snappy took 15-20% more alerts/s at 500 alerts per webhook and ~6% at 50,
    # cut the broker's CPU by a third to two thirds and its memory (the memory
    # engine keeps every byte) by 55-75%, and cost nothing measurable at one
    # alert per request, where zstd and lz4 cost 10-13%.
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "snappy"
    create_topics: bool = True
    # Cap on every topic's partition count when this service creates the topics:
    # the embedded broker's layout (shared.embedded.EMBEDDED_MAX_PARTITIONS).
    max_partitions: int | None = Field(None, ge=1)


class ServiceSettings(BaseSettings):
    """What every service process needs besides Kafka."""

    model_config = SettingsConfigDict(env_prefix="IR_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 0
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP traces endpoint; none = off")
    time_scale: float = Field(1.0, gt=0, description="multiplies every domain threshold")
    config_dir: str = "demo/config"
    state_dir: str = ".state"
