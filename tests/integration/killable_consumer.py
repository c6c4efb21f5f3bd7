"""A consumer process the at-least-once test kills with SIGKILL mid-handler.

Usage: python killable_consumer.py BOOTSTRAP PREFIX GROUP

It subscribes to alert.received; its handler publishes the derived
incident.opened event (the durable effect), prints "EFFECT <event_id>" and
then hangs forever, so the offset of the alert is never committed.
"""

from __future__ import annotations

import asyncio
import sys

from shared.events import AlertReceived, Event, IncidentOpened, derive_event_id
from shared.kafka import EventBus
from shared.settings import KafkaSettings
from shared.topics import Topic


async def main(bootstrap: str, prefix: str, group: str) -> None:
    """Consume, publish the effect, then hang without committing."""
    settings = KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, create_topics=False,
        session_timeout_ms=3000,
    )
    bus = EventBus(settings, "killable")

    async def handle(event: Event) -> None:
        assert isinstance(event, AlertReceived)
        effect = IncidentOpened(
            event_id=derive_event_id("incident.opened", event.event_id),
            producer="killable",
            incident_id="INC-KILL01",
            correlation_id=event.correlation_id,
            causation_id=event.event_id,
            title=event.name,
            services=(event.service,),
            fingerprints=(event.fingerprint,),
            alert_event_id=event.event_id,
            alert_received_at=event.received_at,
        )
        await bus.publish(effect)
        print(f"EFFECT {effect.event_id}", flush=True)
        await asyncio.Event().wait()

    bus.subscribe(Topic.ALERT_RECEIVED, handle, group=group)
    await bus.start()
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
