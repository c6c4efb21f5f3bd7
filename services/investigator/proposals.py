"""What the investigator may propose: allow-listed runbooks with parameters of a known shape.

ARCHITECTURE.md's safety model: an investigator (rules today, an LLM later) may
only choose among runbooks of `shared.policy.RISK_POLICY`, with parameters that
validate against their schema. Every proposal passes `validate_proposal` before
it is emitted; one that does not is dropped (the finding keeps its hypothesis
and says why no action is proposed) rather than handed to the executor.

The investigator never decides risk: it proposes, the executor looks the tier
up in the policy table. `RUNBOOK_PARAMETERS` documents the parameter shape of
every runbook in the policy table (extra keys are refused, so a typo cannot
smuggle an option through); a runbook in the policy without a schema here is
refused too, until someone writes its shape down. The shapes of the runbooks
the executor ships (`services/executor/runbooks/*.yaml`, JSON Schema) are
mirrored here field for field; the table is meant to move to `shared/` so
both services validate against one definition.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError

from shared.catalog import ServiceCatalog
from shared.events import ActionSpec, Model
from shared.policy import RISK_POLICY

_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class _Parameters(Model):
    model_config = Model.model_config | {"extra": "forbid"}

    service: str = Field(pattern=_NAME)


class ServiceRestart(_Parameters):
    """service_restart: restart the service's processes."""

    mode: Literal["graceful", "force"] = "graceful"


class ScaleService(_Parameters):
    """scale_service: set the replica count."""

    replicas: int = Field(ge=0, le=1000)


class DatabaseFailover(_Parameters):
    """database_failover: promote the replica of the service's database."""

    database: str = Field(pattern=_NAME)


class CacheInvalidation(_Parameters):
    """cache_invalidation: drop cache keys matching a glob pattern."""

    pattern: str = Field("cache:*", pattern=r"^cache:[A-Za-z0-9:_*.\-/{}]{1,194}$")


class CircuitBreaker(_Parameters):
    """circuit_breaker: open (or close) the breaker towards a dependency."""

    dependency: str = Field(pattern=_NAME)
    state: Literal["open", "closed", "half_open"] = "open"


class RollbackDeployment(_Parameters):
    """rollback_deployment: redeploy the version that ran before."""

    to_version: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._+-]+$")


class TrafficFailover(_Parameters):
    """traffic_failover: move the service's traffic to another region or pool."""

    to: str = Field(pattern=_NAME)


class RateLimitAdjustment(_Parameters):
    """rate_limit_adjustment: set the requests-per-second limit."""

    requests_per_second: float = Field(gt=0)


class ConnectionPoolReset(_Parameters):
    """connection_pool_reset: drop and re-open the service's connection pool."""

    pool: str | None = Field(None, pattern=_NAME)


class CertificateRenewal(_Parameters):
    """certificate_renewal: renew the service's TLS certificate."""

    domain: str = Field(min_length=1, max_length=253)


class KillZombieProcesses(_Parameters):
    """kill_zombie_processes: reap defunct processes of the service."""


class LogRotation(_Parameters):
    """log_rotation: rotate and compress the service's logs."""


class LogLevelChange(_Parameters):
    """log_level_change: set the service's log threshold."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class DiagnosticsSnapshot(_Parameters):
    """diagnostics_snapshot: collect read-only diagnostics (threads, heap, connections)."""


RUNBOOK_PARAMETERS: dict[str, type[_Parameters]] = {
    "service_restart": ServiceRestart,
    "scale_service": ScaleService,
    "database_failover": DatabaseFailover,
    "rollback_deployment": RollbackDeployment,
    "traffic_failover": TrafficFailover,
    "connection_pool_reset": ConnectionPoolReset,
    "certificate_renewal": CertificateRenewal,
    "kill_zombie_processes": KillZombieProcesses,
    "cache_invalidation": CacheInvalidation,
    "circuit_breaker": CircuitBreaker,
    "rate_limit_adjustment": RateLimitAdjustment,
    "log_rotation": LogRotation,
    "log_level_change": LogLevelChange,
    "diagnostics_snapshot": DiagnosticsSnapshot,
}


class InvalidProposal(ValueError):  # noqa: N818 - reads as the domain outcome it is
    """A proposed action that must not reach the executor."""


def validate_proposal(action: ActionSpec, catalog: ServiceCatalog | None = None) -> ActionSpec:
    """The action with normalised parameters; raises InvalidProposal with the reason."""
    if action.runbook not in RISK_POLICY:
        raise InvalidProposal(f"runbook {action.runbook!r} is not in the risk policy")
    schema = RUNBOOK_PARAMETERS.get(action.runbook)
    if schema is None:
        raise InvalidProposal(f"runbook {action.runbook!r} has no documented parameter shape")
    try:
        params = schema.model_validate(action.parameters)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidProposal(f"parameters of {action.runbook} invalid: {problems}") from exc
    if action.target != params.service:
        raise InvalidProposal(
            f"target {action.target!r} differs from parameters.service {params.service!r}"
        )
    if catalog is not None and catalog.services and catalog.get(action.target) is None:
        raise InvalidProposal(f"target {action.target!r} is not in the service catalog")
    return ActionSpec(
        runbook=action.runbook,
        parameters=params.model_dump(exclude_none=True),
        target=action.target,
    )
