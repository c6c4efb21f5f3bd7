"""What the investigator may propose: runbooks of the shared library, with valid parameters.

ARCHITECTURE.md's safety model: an investigator (rules today, an LLM later) may
only choose among the runbooks of the shared runbook library
(`shared.runbooks`, files in `shared/runbooks/`), each of which has a tier in
`shared.policy.RISK_POLICY`, with parameters that validate against the
runbook's schema. Every proposal passes `validate_proposal` before it is
emitted; one that does not is dropped (the finding keeps its hypothesis and
says why no action is proposed) rather than handed to the executor.

There is deliberately no investigator-side copy of a parameter shape: the
executor validates with the same library and the same function, so a proposal
accepted here is exactly one the executor accepts, normalised the same way
(schema defaults filled in). A runbook of the policy without a definition in
the library is refused: the executor could not run it either.

The investigator never decides risk: it proposes, the executor looks the tier
up in the policy table.
"""

from __future__ import annotations

from shared.catalog import ServiceCatalog
from shared.events import ActionSpec
from shared.runbooks import RunbookLibrary


def validate_proposal(
    action: ActionSpec, catalog: ServiceCatalog | None, library: RunbookLibrary
) -> ActionSpec:
    """The action with normalised parameters; raises InvalidProposal with every reason."""
    return library.validate_action(action, catalog)
