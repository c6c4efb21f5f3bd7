"""Subscription options of the event bus: prompt versus background fetching (no broker)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from shared.events import Event, IncidentUpdated
from shared.kafka import EventBus
from shared.settings import KafkaSettings
from shared.topics import Topic
from tests.samples import sample_event

pytestmark = pytest.mark.unit


def bus(**settings: Any) -> EventBus:
    """A bus that is never started (nothing connects)."""
    return EventBus(KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t.",
                                  create_topics=False, **settings), "svc")


class TestSubscriberOptions:
    """What `_subscriber_options` asks the broker for."""

    def test_prompt_fetches_wait_the_settings_wait_or_the_callers(self) -> None:
        """Default: the settings' wait, or the wait the caller gave."""
        b = bus(fetch_max_wait_ms=70, background_fetch_max_wait_ms=400)
        options = b._subscriber_options(None, None)
        assert options["fetch_max_wait_ms"] == 70
        assert options["group_id"] == "t.svc"
        options = b._subscriber_options("svc.other", 25)
        assert options["fetch_max_wait_ms"] == 25
        assert options["group_id"] == "t.svc.other"

    def test_background_fetches_wait_the_background_wait(self) -> None:
        """background: the settings' background wait (500 ms by default), whatever was given."""
        b = bus(fetch_max_wait_ms=70, background_fetch_max_wait_ms=400)
        for given in (None, 25):
            options = b._subscriber_options("svc.updates", given, background=True)
            assert options["fetch_max_wait_ms"] == 400
            assert options["group_id"] == "t.svc.updates"
        assert bus()._subscriber_options(None, None, background=True)["fetch_max_wait_ms"] == 500

    def test_no_fetch_waits_for_bytes(self) -> None:
        """No min_bytes hold: Tansu re-reads every partition with news during one."""
        b = bus()
        for background in (False, True):
            options = b._subscriber_options("g", None, background=background)
            assert options.get("fetch_min_bytes", 1) == 1

    def test_everything_else_is_shared(self) -> None:
        """Only the fetch wait differs between prompt and background subscriptions."""
        b = bus()
        prompt = b._subscriber_options("g", None)
        background = b._subscriber_options("g", None, background=True)
        fetch = {"fetch_max_wait_ms"}
        assert {k: v for k, v in prompt.items() if k not in fetch} == {
            k: v for k, v in background.items() if k not in fetch}


class TestSubscribeForwardsBackground:
    """subscribe and subscribe_batch hand the background options to the broker."""

    @staticmethod
    def _recording(b: EventBus) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def subscriber(*topics: str, **kw: Any) -> Any:
            calls.append({"topics": topics, **kw})
            return lambda handler: handler

        b.broker.subscriber = subscriber  # type: ignore[method-assign, assignment]
        return calls

    def test_subscribe_batch(self) -> None:
        """A background batch subscription waits the background wait for its batch too."""
        b = bus(background_fetch_max_wait_ms=400)
        calls = self._recording(b)

        async def handle(events: Sequence[Event]) -> None:
            return None

        b.subscribe_batch(Topic.INCIDENT_UPDATED, handle, group="svc.updates", background=True)
        b.subscribe_batch(Topic.INCIDENT_OPENED, handle)
        background, prompt = calls
        assert background["topics"] == ("t.incident.updated",)
        assert (background["fetch_max_wait_ms"], background["batch_timeout_ms"]) == (400, 400)
        assert background["group_id"] == "t.svc.updates"
        assert (prompt["fetch_max_wait_ms"], prompt["batch_timeout_ms"]) == (100, 100)

    def test_subscribe(self) -> None:
        """A per-event subscription fetches promptly."""
        b = bus(background_fetch_max_wait_ms=400)
        calls = self._recording(b)

        async def handle(event: Event) -> None:
            return None

        b.subscribe(Topic.INCIDENT_UPDATED, handle, group="other")
        assert [c["fetch_max_wait_ms"] for c in calls] == [100]


def _records(count: int) -> tuple[ConsumerRecord[bytes, bytes], ...]:
    events = [sample_event(IncidentUpdated, detail=f"u{n}") for n in range(count)]
    return tuple(
        ConsumerRecord("t.incident.updated", 0, n, 0, 0, None, e.encode(), None, 0, 0, ())
        for n, e in enumerate(events)
    )


class TestBackgroundPace:
    """A background batch subscription handles at most one batch per background wait while it
    keeps up: holding a batch back holds the consumer's next fetch back (the broker is asked a
    few times a second however busy the topic). A full batch means it is behind: no pause."""

    @staticmethod
    async def _consumer(background: bool) -> tuple[Any, list[float]]:
        b = bus(background_fetch_max_wait_ms=1000)
        consumers: list[Any] = []

        def subscriber(*topics: str, **kw: Any) -> Any:
            return consumers.append

        b.broker.subscriber = subscriber  # type: ignore[method-assign, assignment]
        handled: list[float] = []

        async def handle(events: Sequence[Event]) -> None:
            handled.append(time.monotonic())

        b.subscribe_batch(Topic.INCIDENT_UPDATED, handle, max_records=5, background=background)
        return consumers[0], handled

    async def test_batches_of_a_subscription_that_keeps_up_are_an_interval_apart(self) -> None:
        consume, handled = await self._consumer(background=True)
        began = time.monotonic()
        for _ in range(3):
            await consume(_records(2))
        assert handled[0] - began < 0.5  # the first batch goes at once
        assert [b - a >= 0.95 for a, b in itertools.pairwise(handled)] == [True, True]

    async def test_full_batches_go_at_once(self) -> None:
        consume, handled = await self._consumer(background=True)
        await consume(_records(2))
        for _ in range(3):
            await consume(_records(5))  # max_records: behind, catching up
        assert all(b - a < 0.5 for a, b in itertools.pairwise(handled)), handled
        await consume(_records(1))  # caught up again: paced
        assert handled[-1] - handled[-2] >= 0.95

    async def test_prompt_subscriptions_are_not_paced(self) -> None:
        consume, handled = await self._consumer(background=False)
        for _ in range(3):
            await consume(_records(2))
        assert all(b - a < 0.5 for a, b in itertools.pairwise(handled)), handled
