"""Subscription options of the event bus: prompt versus background fetching (no broker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from shared.events import Event
from shared.kafka import EventBus
from shared.settings import KafkaSettings
from shared.topics import Topic

pytestmark = pytest.mark.unit


def bus(**settings: Any) -> EventBus:
    """A bus that is never started (nothing connects)."""
    return EventBus(KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t.",
                                  create_topics=False, **settings), "svc")


class TestSubscriberOptions:
    """What `_subscriber_options` asks the broker for."""

    def test_prompt_fetches_return_at_the_first_byte(self) -> None:
        """Default: min bytes 1 and the settings' wait, or the wait the caller gave."""
        b = bus(fetch_max_wait_ms=70, background_fetch_max_wait_ms=400,
                background_fetch_min_bytes=4096)
        options = b._subscriber_options(None, None)
        assert (options["fetch_min_bytes"], options["fetch_max_wait_ms"]) == (1, 70)
        assert options["group_id"] == "t.svc"
        options = b._subscriber_options("svc.other", 25)
        assert (options["fetch_min_bytes"], options["fetch_max_wait_ms"]) == (1, 25)
        assert options["group_id"] == "t.svc.other"

    def test_background_fetches_wait_for_bytes_or_the_background_wait(self) -> None:
        """background: the settings' background min bytes and wait, whatever wait was given."""
        b = bus(fetch_max_wait_ms=70, background_fetch_max_wait_ms=400,
                background_fetch_min_bytes=4096)
        for given in (None, 25):
            options = b._subscriber_options("svc.updates", given, background=True)
            assert options["fetch_min_bytes"] == 4096
            assert options["fetch_max_wait_ms"] == 400
            assert options["group_id"] == "t.svc.updates"

    def test_background_defaults(self) -> None:
        """By default a background fetch asks for 1 MiB or 500 ms."""
        options = bus()._subscriber_options(None, None, background=True)
        assert options["fetch_min_bytes"] == 1024 * 1024
        assert options["fetch_max_wait_ms"] == 500

    def test_everything_else_is_shared(self) -> None:
        """Only the fetch options differ between prompt and background subscriptions."""
        b = bus()
        prompt = b._subscriber_options("g", None)
        background = b._subscriber_options("g", None, background=True)
        fetch = {"fetch_min_bytes", "fetch_max_wait_ms"}
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
        b = bus(background_fetch_max_wait_ms=400, background_fetch_min_bytes=4096)
        calls = self._recording(b)

        async def handle(events: Sequence[Event]) -> None:
            return None

        b.subscribe_batch(Topic.INCIDENT_UPDATED, handle, group="svc.updates", background=True)
        b.subscribe_batch(Topic.INCIDENT_OPENED, handle)
        background, prompt = calls
        assert background["topics"] == ("t.incident.updated",)
        assert (background["fetch_min_bytes"], background["fetch_max_wait_ms"],
                background["batch_timeout_ms"]) == (4096, 400, 400)
        assert background["group_id"] == "t.svc.updates"
        assert (prompt["fetch_min_bytes"], prompt["fetch_max_wait_ms"],
                prompt["batch_timeout_ms"]) == (1, 100, 100)

    def test_subscribe(self) -> None:
        """The same for a per-event subscription."""
        b = bus(background_fetch_max_wait_ms=400, background_fetch_min_bytes=4096)
        calls = self._recording(b)

        async def handle(event: Event) -> None:
            return None

        b.subscribe(Topic.INCIDENT_UPDATED, handle, background=True)
        b.subscribe(Topic.INCIDENT_UPDATED, handle, group="other")
        assert [(c["fetch_min_bytes"], c["fetch_max_wait_ms"]) for c in calls] == [
            (4096, 400), (1, 100)]
