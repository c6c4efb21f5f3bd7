"""The approval desk: where a human decision becomes an event in the log.

The web page, the JSON API and the CLI (through the API) all come here, so the
rules in `decisions.py` are applied once. The desk adds what the pure rules
cannot do: it reserves the request (or incident) while its event is being
published, so two concurrent clicks cannot both pass the "undecided" check;
it publishes; it folds the published event into the projection at once, so the
next read already shows the decision; and it records every refusal that
concerns a known incident as `audit.recorded`.

A publish that fails releases the reservation and surfaces as
`DecisionNotRecorded` (HTTP 503): nothing was decided, the human may retry, and
a retry carries the same derived event id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.approval.approvers import Approver
from services.approval.board import ResponseBoard
from services.approval.decisions import (
    DecisionRefused,
    SigningAuthority,
    acknowledge_incident,
    deny_approval,
    grant_approval,
    refusal_audit,
    resolve_incident_manually,
)
from shared.clock import Clock
from shared.events import (
    ApprovalDenied,
    ApprovalGranted,
    Event,
    IncidentAcknowledged,
    IncidentResolved,
)

log = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[bool]]
E = TypeVar("E", bound=Event)


class DecisionNotRecorded(RuntimeError):  # noqa: N818 - a domain outcome
    """The decision was allowed but could not be written to the log; nothing was decided."""


class ApprovalDesk:
    """Applies the decision rules, publishes the outcome, audits refusals."""

    def __init__(
        self,
        *,
        board: ResponseBoard,
        authority: SigningAuthority,
        clock: Clock,
        publish: Publish,
    ) -> None:
        self.board = board
        self.authority = authority
        self.clock = clock
        self._publish = publish
        self._in_flight: set[str] = set()

    async def approve(self, request_id: str, approver: Approver, comment: str) -> ApprovalGranted:
        """Grant request_id as approver; raises DecisionRefused or DecisionNotRecorded."""
        key = f"approval:{request_id}"
        record = self.board.approval(request_id)
        incident_id = record.request.incident_id if record and record.request else None
        return await self._decide(
            key,
            approver,
            "approval.grant",
            lambda: grant_approval(
                record,
                approver=approver,
                comment=comment,
                authority=self.authority,
                incident=self.board.incident(incident_id) if incident_id else None,
                in_flight=key in self._in_flight,
                now=self.clock.now(),
            ),
        )

    async def deny(self, request_id: str, approver: Approver, comment: str) -> ApprovalDenied:
        """Deny request_id as approver; raises DecisionRefused or DecisionNotRecorded."""
        key = f"approval:{request_id}"
        return await self._decide(
            key,
            approver,
            "approval.deny",
            lambda: deny_approval(
                self.board.approval(request_id),
                approver=approver,
                comment=comment,
                policy=self.authority.policy,
                in_flight=key in self._in_flight,
                now=self.clock.now(),
            ),
        )

    async def acknowledge(
        self, incident_id: str, approver: Approver, comment: str, via: str
    ) -> IncidentAcknowledged:
        """Acknowledge incident_id as approver; raises DecisionRefused or DecisionNotRecorded."""
        key = f"ack:{incident_id}"
        return await self._decide(
            key,
            approver,
            "incident.acknowledge",
            lambda: acknowledge_incident(
                self.board.incident(incident_id),
                approver=approver,
                comment=comment,
                via=via,
                policy=self.authority.policy,
                in_flight=key in self._in_flight,
                now=self.clock.now(),
            ),
        )

    async def resolve(
        self, incident_id: str, approver: Approver, summary: str, *, verified: bool
    ) -> IncidentResolved:
        """Resolve incident_id manually; raises DecisionRefused or DecisionNotRecorded."""
        key = f"resolve:{incident_id}"
        return await self._decide(
            key,
            approver,
            "incident.resolve",
            lambda: resolve_incident_manually(
                self.board.incident(incident_id),
                approver=approver,
                summary=summary,
                verified=verified,
                policy=self.authority.policy,
                in_flight=key in self._in_flight,
                now=self.clock.now(),
            ),
        )

    async def _decide(
        self, key: str, approver: Approver, action: str, rule: Callable[[], E]
    ) -> E:
        try:
            event = rule()
        except DecisionRefused as refusal:
            log.info("%s by %s refused: %s", action, approver.name, refusal.reason)
            await self._audit(refusal, approver, action)
            raise
        # No await between the rule's "not in flight" check and this line: the
        # reservation is atomic on the event loop.
        self._in_flight.add(key)
        try:
            await self._publish(event)
        except Exception as exc:
            log.exception("%s by %s could not be published", action, approver.name)
            raise DecisionNotRecorded(
                f"the decision could not be recorded in the event log ({type(exc).__name__}); "
                "nothing was decided, please retry"
            ) from exc
        finally:
            self._in_flight.discard(key)
        self.board.apply(event)
        log.info("%s by %s recorded as %s", action, approver.name, event.event_id)
        return event

    async def _audit(self, refusal: DecisionRefused, approver: Approver, action: str) -> None:
        audit = refusal_audit(refusal, actor=approver.name, action=action, now=self.clock.now())
        if audit is None:
            return
        try:
            await self._publish(audit)
        except Exception:  # the refusal stands even if its audit record cannot be written
            log.exception("audit of refused %s by %s could not be published",
                          action, approver.name)
