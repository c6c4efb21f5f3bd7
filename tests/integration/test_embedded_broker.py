"""The embedded broker keeps acked records, headers and committed offsets across kill -9.

A persistent broker (Tansu on SeaweedFS S3) gets 1,000 keyed records with headers
(acks=all) and a group commits offset 600; then both processes are SIGKILLed, a new
broker starts on the same state directory, and everything must come back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.embedded import BrokerError, EmbeddedBroker

pytestmark = pytest.mark.integration

N_RECORDS = 1000
COMMIT_AT = 600
TOPIC = "durability.check"
TP = TopicPartition(TOPIC, 0)


def _expected(i: int) -> tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]:
    key = f"incident-{i % 17}".encode()
    value = f'{{"seq": {i}, "payload": "{"x" * 64}"}}'.encode()
    headers = (("seq", str(i).encode()), ("traceparent", f"00-{i:032x}-{i:016x}-01".encode()))
    return key, value, headers


def _consumer(bootstrap: str, group: str | None, **kwargs: object) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **kwargs,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        heartbeat_interval_ms=1000,
    )


async def _read(consumer: AIOKafkaConsumer, count: int, timeout: float) -> list[ConsumerRecord]:
    """Fetch until ``count`` records arrived or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    out: list[ConsumerRecord] = []
    while len(out) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(out)}/{count} records before the deadline"
        batches = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
        for records in batches.values():
            out.extend(records)
    return out


def _assert_record(record: ConsumerRecord, i: int) -> None:
    key, value, headers = _expected(i)
    assert (record.offset, record.key, record.value) == (i, key, value)
    assert tuple(record.headers) == headers


def _assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def _produce_and_commit(bootstrap: str, group: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(TOPIC, 1, 1)])
        assert [e[1] for e in response.topic_errors] == [0]
    finally:
        await admin.close()

    # Compressed as the services write them (IR_KAFKA_COMPRESSION_TYPE's default).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                compression_type="snappy")
    await producer.start()
    try:
        futures = []
        for i in range(N_RECORDS):
            key, value, headers = _expected(i)
            futures.append(await producer.send(TOPIC, value, key=key, headers=list(headers)))
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert [m.offset for m in metadata] == list(range(N_RECORDS))

    consumer = _consumer(bootstrap, group)
    consumer.subscribe([TOPIC])
    await consumer.start()
    try:
        records = await _read(consumer, COMMIT_AT, timeout=30)
        for i, record in enumerate(records[:COMMIT_AT]):
            _assert_record(record, i)
        await consumer.commit({TP: COMMIT_AT})
        assert await consumer.committed(TP) == COMMIT_AT
    finally:
        await consumer.stop()


async def _check_recovered(bootstrap: str, group: str) -> None:
    replay = _consumer(bootstrap, None)
    await replay.start()
    try:
        replay.assign([TP])
        await replay.seek_to_beginning(TP)
        records = await _read(replay, N_RECORDS, timeout=30)
    finally:
        await replay.stop()
    assert len(records) == N_RECORDS
    for i, record in enumerate(records):
        _assert_record(record, i)

    # Manual assignment with the group id: no join round (which would wait out the
    # pre-crash member's session), yet the start position comes from the committed offset.
    member = _consumer(bootstrap, group)
    await member.start()
    try:
        member.assign([TP])
        assert await member.committed(TP) == COMMIT_AT
        resumed = await _read(member, 1, timeout=30)
        assert resumed[0].offset == COMMIT_AT  # the group resumes where it committed
    finally:
        await member.stop()


async def test_persistent_broker_survives_kill_9(tmp_path: Path) -> None:
    """Records, headers and the group's committed offset survive SIGKILL of both processes."""
    state_dir = tmp_path / "broker"
    group = f"g-{uuid.uuid4().hex[:8]}"

    first = EmbeddedBroker(state_dir=state_dir)
    await first.astart()
    pids = first.pids
    try:
        assert set(pids) == {"tansu", "weed"}
        await _produce_and_commit(first.bootstrap_servers, group)
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
    finally:
        await first.astop()  # reaps the killed children, releases the state-dir lock
    for pid in pids.values():
        _assert_gone(pid)

    async with EmbeddedBroker(state_dir=state_dir) as second:
        second_pids = second.pids
        await _check_recovered(second.bootstrap_servers, group)
    for pid in second_pids.values():
        _assert_gone(pid)
    assert (state_dir / "logs" / "tansu.log").read_text().count("starting tansu") == 2


async def test_memory_broker_accepts_writes_and_stops(tmp_path: Path) -> None:
    """A memory broker serves on the requested port and leaves no process behind."""
    broker = EmbeddedBroker(memory=True, state_dir=tmp_path)
    with broker:
        pid = broker.pids["tansu"]
        assert broker.running
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait("_embedded_broker_probe", b"hello")
        finally:
            await producer.stop()
        assert meta.offset >= 1  # the start-up probe wrote the first record
    _assert_gone(pid)
    assert not broker.running


def test_taken_port_is_refused_not_shared(tmp_path: Path) -> None:
    """Tansu itself exits 0 on a taken port; the wrapper must fail instead of probing a stranger."""
    with EmbeddedBroker(memory=True, state_dir=tmp_path / "a") as first:
        port = int(first.bootstrap_servers.rsplit(":", 1)[1])
        second = EmbeddedBroker(memory=True, port=port, state_dir=tmp_path / "b")
        with pytest.raises(BrokerError, match="already in use"):
            second.start()
        assert second.pids == {}
        assert first.running
