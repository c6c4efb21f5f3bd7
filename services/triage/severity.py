"""Severity of an incident: computed from signals, never copied from the source.

This is the one place severity rules live (STYLE.md: one source of truth per
concept). The matrix of DOMAIN.md is applied as three steps, each leaving a
human-readable reason:

1. **Source signal.** The alert's own severity (already mapped by the gateway,
   else its raw word parsed through `Severity.parse`, else a `severity` label).
   Without one we assume SEV2: "when uncertain, escalate to a human", but
   without paging executives for an alert nobody graded.
2. **Impact ceiling from the catalog and the blast radius.** What the affected
   services *can* do to customers bounds what the source may claim:

   | affected service                                          | at most |
   |-----------------------------------------------------------|---------|
   | customer-facing tier 1 (e.g. storefront)                  | SEV0    |
   | tier 1 whose dependents reach a customer-facing tier 1    | SEV0    |
   | customer-facing, or reaching a customer-facing service    | SEV1    |
   | tier 1, no customer-facing service reached                | SEV2    |
   | anything else (non-critical, internal)                    | SEV3    |
   | not in the catalog (impact unknown)                       | SEV0    |

   The ceiling of an incident is the worst over its services. So a critical
   alert on the internal, tier-4 `reporting` service is SEV3 ("non-critical
   service affected") while a critical alert on `payments` is SEV0: checkout
   and storefront depend on it. An uncatalogued service gets no ceiling: we
   cannot prove the impact is small, so the source is believed.
3. **Breadth.** Three or more affected services make the incident one level
   worse (still within the ceiling): several services failing together is a
   "large customer segment", not a partial degradation.

Finally, labels that mean data loss or a security breach force SEV0 and turn
off auto-remediation: those incidents are for humans first (DOMAIN.md safety
rules, escalation tier 4).

Escalation over time ("severity only escalates while open") is the
`at_least` argument: the caller passes the incident's current severity and the
result is never better. `services.triage.correlation` decides whether a result
is a change worth announcing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.catalog import ServiceCatalog
from shared.domain import Severity
from shared.events import AlertReceived, BlastRadius

#: Assumed when the source gave no (recognisable) severity.
DEFAULT_SOURCE_SEVERITY = Severity.SEV2
#: This many affected services or more make an incident one level worse.
WIDESPREAD_SERVICES = 3

#: Label names (keys, or values of `category`-like keys) that force SEV0, and what they mean.
FORCING_LABELS: Mapping[str, str] = {
    "data_loss": "data loss risk",
    "dataloss": "data loss risk",
    "data_corruption": "data loss risk",
    "security": "security breach",
    "security_breach": "security breach",
    "security_incident": "security breach",
}
_CATEGORY_KEYS = ("category", "type", "kind", "impact", "class")
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off", "none"})

#: The matrix's criteria, as customer-impact wording per severity.
_IMPACT_WORDING: Mapping[Severity, str] = {
    Severity.SEV0: "complete outage, all customers potentially affected",
    Severity.SEV1: "major feature unavailable, a large customer segment affected",
    Severity.SEV2: "partial degradation, limited customer impact",
    Severity.SEV3: "minor issue, minimal customer impact",
    Severity.SEV4: "no customer impact expected",
}


@dataclass(frozen=True, slots=True)
class SourceSignal:
    """The source's own grading of one alert."""

    severity: Severity | None
    word: str | None


@dataclass(frozen=True, slots=True)
class Classification:
    """A computed severity with everything that justified it."""

    severity: Severity
    reasons: tuple[str, ...]
    blast_radius: BlastRadius
    customer_impact: str
    auto_remediation_allowed: bool


def source_signal(alert: AlertReceived) -> SourceSignal:
    """The severity the source gave an alert (mapped field, raw word, or `severity` label)."""
    word = alert.source_severity or alert.labels.get("severity")
    if alert.severity is not None:
        return SourceSignal(alert.severity, word or alert.severity.value)
    return SourceSignal(Severity.parse(word), word)


def forcing_labels(labels: Mapping[str, str]) -> tuple[str, ...]:
    """The SEV0-forcing label names present (as keys with a true value, or category values)."""
    found: set[str] = set()
    for key, value in labels.items():
        norm_key = _normalise(key)
        if norm_key in FORCING_LABELS and _normalise(value) not in _FALSE_WORDS:
            found.add(norm_key)
        elif norm_key in _CATEGORY_KEYS and _normalise(value) in FORCING_LABELS:
            found.add(_normalise(value))
    return tuple(sorted(found))


def classify(
    *,
    services: Sequence[str],
    catalog: ServiceCatalog,
    source: SourceSignal,
    labels: Mapping[str, str] | None = None,
    at_least: Severity | None = None,
) -> Classification:
    """Severity, reasons, blast radius and customer impact; never better than at_least."""
    reasons: list[str] = []
    affected = _unique(services)
    radius = catalog.blast_radius(affected)

    if source.severity is not None:
        computed = source.severity
        reasons.append(f"source severity {source.word or computed.value} -> {computed.value}")
    else:
        computed = DEFAULT_SOURCE_SEVERITY
        heard = f" ({source.word!r} not recognised)" if source.word else ""
        reasons.append(
            f"no source severity{heard} -> assume {computed.value} ({computed.label})"
        )

    ceiling = Severity.SEV4
    for name in affected:
        service_ceiling, why = _impact_ceiling(name, catalog)
        reasons.append(why)
        if service_ceiling.is_worse_than(ceiling):
            ceiling = service_ceiling
    reasons.append(_describe_radius(radius))

    if computed.is_worse_than(ceiling):
        computed = ceiling
        reasons.append(f"impact caps severity at {ceiling.value}")

    if len(affected) >= WIDESPREAD_SERVICES:
        widened = Severity.from_rank(computed.rank - 1)
        if widened is not computed and not widened.is_worse_than(ceiling):
            reasons.append(
                f"{len(affected)} services affected -> one level worse ({widened.value})"
            )
            computed = widened

    if at_least is not None and at_least.is_worse_than(computed):
        reasons.append(
            f"kept at {at_least.value}: severity never drops while the incident is open"
        )
        computed = at_least

    forced = forcing_labels(labels or {})
    for name in forced:
        reasons.append(f"label {name} forces SEV0 ({FORCING_LABELS[name]})")
    if forced:
        computed = Severity.SEV0
        reasons.append("auto-remediation disabled: a human must lead this incident")

    reasons.append(f"=> {computed.value} ({computed.label})")
    return Classification(
        severity=computed,
        reasons=tuple(reasons),
        blast_radius=radius,
        customer_impact=_customer_impact(computed, radius, forced),
        auto_remediation_allowed=not forced,
    )


def _impact_ceiling(name: str, catalog: ServiceCatalog) -> tuple[Severity, str]:
    service = catalog.get(name)
    if service is None:
        return Severity.SEV0, f"{name} is not in the service catalog: impact unknown, not capped"
    facing = [n for n in catalog.blast_radius([name]).customer_facing if n != name]
    facing_tier1 = [n for n in facing if (s := catalog.get(n)) is not None and s.tier == 1]
    what = f"{name} is {'customer-facing ' if service.customer_facing else ''}tier {service.tier}"
    if service.customer_facing and service.tier == 1:
        ceiling, why = Severity.SEV0, what
    elif service.tier == 1 and facing_tier1:
        ceiling = Severity.SEV0
        why = f"{what} and customer-facing tier-1 {', '.join(facing_tier1)} depend on it"
    elif service.customer_facing:
        ceiling, why = Severity.SEV1, what
    elif facing:
        ceiling, why = Severity.SEV1, f"{what}, customer-facing {', '.join(facing)} depend on it"
    elif service.tier == 1:
        ceiling, why = Severity.SEV2, f"{what}, no customer-facing dependents"
    else:
        ceiling, why = Severity.SEV3, f"{what}, internal, no customer-facing dependents"
    return ceiling, f"{why} -> up to {ceiling.value}"


def _describe_radius(radius: BlastRadius) -> str:
    parts: list[str] = []
    if radius.dependents:
        parts.append(f"dependents {', '.join(radius.dependents)}")
    if radius.customer_facing:
        parts.append(f"reaches customer-facing {', '.join(radius.customer_facing)}")
    else:
        parts.append("reaches no customer-facing service")
    return "blast radius: " + "; ".join(parts)


def _customer_impact(severity: Severity, radius: BlastRadius, forced: Iterable[str]) -> str:
    risks = sorted({FORCING_LABELS[name] for name in forced})
    prefix = f"{' and '.join(risks).capitalize()} reported. " if risks else ""
    if radius.customer_facing:
        who = f"Customers of {', '.join(radius.customer_facing)}"
    else:
        who = f"No customer-facing service affected (internal: {', '.join(radius.affected)})"
    return f"{prefix}{who}: {_IMPACT_WORDING[severity]} ({severity.value})."


def _normalise(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(" ", "_")


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
