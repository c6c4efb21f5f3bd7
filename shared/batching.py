"""Record batches shared by concurrent publishers: cheap per record, one request per round.

aiokafka's `send()` costs ~25 us of Python per record (a coroutine, a future
and the partitioner per message); appending to a `BatchBuilder` costs ~8 us.
But a builder handed to `send_batch` waits until the partition's previous
batch has gone out, so if every caller submitted batches of its own, eight
concurrent webhook requests would queue behind each other's round trips. The
`RecordBatcher` therefore keeps, per partition, a queue of batches whose last
one stays open: every caller appends to it, and one sender task per partition
submits the batches in order. While a submission waits for the broker, new
records gather in the next open batch and travel together in the next round,
the same pipelining aiokafka's own accumulator does per message.

Order: records of one partition are appended, submitted and therefore written
in call order. Every appended record gets its batch's future, resolved with
the batch's acknowledgement (`acks=all`) or its error.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

TopicPartition = tuple[str, int]


class _Batch:
    __slots__ = ("builder", "done")

    def __init__(self, builder: BatchBuilder, done: asyncio.Future[Any]) -> None:
        self.builder = builder
        self.done = done


class RecordBatcher:
    """Appends records to open per-partition batches; a sender per partition submits them."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._queues: dict[TopicPartition, deque[_Batch]] = {}
        self._senders: dict[TopicPartition, asyncio.Task[None]] = {}

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
    ) -> asyncio.Future[Any]:
        """Add a record to the partition's open batch; the future of that batch's ack."""
        tp = (topic, partition)
        queue = self._queues.setdefault(tp, deque())
        if tp not in self._senders:
            self._senders[tp] = asyncio.create_task(self._send(tp, queue))
        if not queue:
            queue.append(self._new_batch())
        batch = queue[-1]
        if batch.builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
            # The open batch is full: it goes as it is. An empty builder always
            # takes its first record (the broker judges a record too large).
            batch = self._new_batch()
            batch.builder.append(key=key, value=value, timestamp=None, headers=headers)
            queue.append(batch)
        return batch.done

    def _new_batch(self) -> _Batch:
        return _Batch(self.producer.create_batch(), asyncio.get_running_loop().create_future())

    async def _send(self, tp: TopicPartition, queue: deque[_Batch]) -> None:
        """Submit the partition's batches in order until none is left."""
        try:
            while queue:
                batch = queue.popleft()  # from now on nobody appends to it
                try:
                    acked = await self.producer.send_batch(batch.builder, tp[0], partition=tp[1])
                except Exception as exc:  # e.g. producer closed, timed out waiting for a slot
                    _settle(batch.done, exc)
                    continue
                acked.add_done_callback(lambda f, done=batch.done: _relay(f, done))
        finally:
            self._senders.pop(tp, None)
            while queue:  # only when cancelled (shutdown): fail what can no longer go
                _settle(queue.popleft().done, RuntimeError("the publisher was stopped"))


def _relay(acked: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    if acked.cancelled():
        _settle(done, asyncio.CancelledError())
    elif (exc := acked.exception()) is not None:
        _settle(done, exc)
    elif not done.done():
        done.set_result(acked.result())


def _settle(done: asyncio.Future[Any], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)
