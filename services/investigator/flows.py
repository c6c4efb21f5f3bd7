"""One investigation, start to finish, whatever the investigator does.

`investigate_safely` bounds the investigator by a deadline and turns a crash
or a timeout into an "unknown" finding that tells a human to look (DOMAIN.md:
"when uncertain, escalate to a human"): a broken investigator must never leave
an incident without an `investigation.completed`.

`vet_finding` is the gate between any investigator (rules today, an LLM later)
and the event log: the proposed action must be a runbook of the shared library
with valid parameters, exactly as the executor will check it (else it is
dropped and the rationale says why), and every text is redacted.
"""

from __future__ import annotations

import asyncio
import logging

from services.investigator.investigation import Finding, InvestigationContext, Investigator
from services.investigator.proposals import validate_proposal
from shared.catalog import ServiceCatalog
from shared.events import Evidence
from shared.redaction import Redactor, redact_value
from shared.runbooks import InvalidProposal, RunbookLibrary

log = logging.getLogger(__name__)


async def investigate_safely(
    investigator: Investigator, context: InvestigationContext, *, timeout_s: float
) -> Finding:
    """The investigator's finding, or an "unknown" finding when it fails or overruns."""
    try:
        async with asyncio.timeout(timeout_s):
            return await investigator.investigate(context)
    except TimeoutError:
        reason = f"the {investigator.name} investigator did not finish within {timeout_s:g} s"
    except Exception as exc:  # an investigator bug must still produce a finding
        log.exception("investigator %s failed on %s", investigator.name, context.incident.id)
        reason = f"the {investigator.name} investigator failed: {type(exc).__name__}: {exc}"
    return Finding(
        hypothesis="Automated investigation failed; a human should investigate",
        confidence=0.0,
        evidence=(Evidence(source=investigator.name, kind="investigation_failed",
                           summary=reason),),
        rationale=f"{reason}. No runbook is proposed.",
    )


def vet_finding(
    finding: Finding, catalog: ServiceCatalog, redactor: Redactor, library: RunbookLibrary
) -> Finding:
    """The finding with its proposal validated (or dropped, with why) and all text redacted."""
    action, rationale = finding.proposed_action, finding.rationale
    if action is not None:
        try:
            action = validate_proposal(action, catalog, library)
        except InvalidProposal as exc:
            log.warning("dropped proposal %s: %s", action.runbook, exc)
            action = None
            rationale = f"{rationale} Proposed action dropped: {exc}."
    clean = redact_value(redactor, {
        "hypothesis": finding.hypothesis,
        "rationale": rationale,
        "evidence": [e.model_dump() for e in finding.evidence],
    })
    return finding.model_copy(update={
        "hypothesis": clean["hypothesis"],
        "rationale": clean["rationale"],
        "evidence": tuple(Evidence.model_validate(e) for e in clean["evidence"]),
        "proposed_action": action,
    })
