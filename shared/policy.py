"""The risk policy: one table that says how risky each runbook is, and who may approve.

DOMAIN.md's three tiers: HIGH needs a human approval bound to the action,
MEDIUM runs automatically with its rollback prepared first, LOW runs with an
audit event. The tier of an action comes from `RISK_POLICY` only, never from
an LLM, a proposal or alert text; an unknown runbook is refused.

Who may approve is configuration (`approvers.yaml`, section `roles`): each
role grants approval for some services (`"*"` for all) up to a maximum tier.
The approval service signs the approver's roles into the token; the executor
re-checks them against the same role table before it acts.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field

from shared.domain import RiskTier
from shared.events import Model

RISK_POLICY: dict[str, RiskTier] = {
    # DOMAIN.md runbook library; HIGH per the risk-tier examples (restarts, DB,
    # traffic, config, rollbacks, deployments), MEDIUM for cache, breakers, rate
    # limits; LOW for log levels, metric collection and read-only diagnostics.
    "service_restart": RiskTier.HIGH,
    "scale_service": RiskTier.HIGH,
    "database_failover": RiskTier.HIGH,
    "rollback_deployment": RiskTier.HIGH,
    "traffic_failover": RiskTier.HIGH,
    "connection_pool_reset": RiskTier.HIGH,
    "certificate_renewal": RiskTier.HIGH,
    "kill_zombie_processes": RiskTier.HIGH,
    "cache_invalidation": RiskTier.MEDIUM,
    "circuit_breaker": RiskTier.MEDIUM,
    "rate_limit_adjustment": RiskTier.MEDIUM,
    "log_rotation": RiskTier.MEDIUM,
    "log_level_change": RiskTier.LOW,
    "diagnostics_snapshot": RiskTier.LOW,
}

_ORDER = {RiskTier.LOW: 0, RiskTier.MEDIUM: 1, RiskTier.HIGH: 2}


class UnknownRunbook(LookupError):  # noqa: N818 - reads as the domain outcome it is
    """A runbook that is not in the policy table: never executed."""


def risk_of(runbook: str) -> RiskTier:
    """The policy tier of a runbook; raises UnknownRunbook when it has none."""
    try:
        return RISK_POLICY[runbook]
    except KeyError as exc:
        raise UnknownRunbook(f"runbook {runbook!r} is not in the risk policy") from exc


class RoleGrant(Model):
    """A role's approval rights: which services, up to which risk tier."""

    services: tuple[str, ...] = ("*",)
    max_risk: RiskTier = RiskTier.HIGH

    def allows(self, service: str, risk: RiskTier) -> bool:
        """True when this role may approve an action of risk on service."""
        in_scope = "*" in self.services or service in self.services
        return in_scope and _ORDER[risk] <= _ORDER[self.max_risk]


class ApprovalPolicy(Model):
    """Role table: role name -> grant."""

    roles: dict[str, RoleGrant] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ApprovalPolicy:
        """Read the `roles:` section of an approvers YAML file."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate({"roles": data.get("roles", {})})

    def roles_allowed(self, service: str, risk: RiskTier) -> set[str]:
        """Names of the roles that may approve an action of risk on service."""
        return {name for name, grant in self.roles.items() if grant.allows(service, risk)}
