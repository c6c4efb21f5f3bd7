"""Severity rules of triage: the DOMAIN.md matrix applied to source, catalog and blast radius."""

from __future__ import annotations

import pytest

from services.triage.severity import (
    Classification,
    SourceSignal,
    classify,
    forcing_labels,
    source_signal,
)
from shared.domain import Severity
from tests.unit.test_triage_support import CATALOG, make_alert

pytestmark = pytest.mark.unit


def grade(*services: str, source: str | None = "critical", labels: dict[str, str] | None = None,
          at_least: Severity | None = None) -> Classification:
    signal = source_signal(make_alert(services[0], source_severity=source))
    return classify(services=services, catalog=CATALOG, source=signal, labels=labels,
                    at_least=at_least)


class TestMatrix:
    """One row per case of the matrix wording, with the reasons that justify it."""

    @pytest.mark.parametrize(
        ("services", "source", "expected", "reason"),
        [
            # A customer-facing tier-1 service hard down: complete outage.
            (("storefront",), "critical", Severity.SEV0,
             "storefront is customer-facing tier 1 -> up to SEV0"),
            # Checkout and storefront depend on payments: payments down stops every order.
            (("payments",), "critical", Severity.SEV0,
             "payments is tier 1 and customer-facing tier-1 checkout, storefront depend on it"
             " -> up to SEV0"),
            # The catalog only degrades the storefront: major feature, not a full outage.
            (("catalog",), "critical", Severity.SEV1, "impact caps severity at SEV1"),
            # A customer-facing tier-2 service: at most a large segment.
            (("search",), "critical", Severity.SEV1,
             "search is customer-facing tier 2 -> up to SEV1"),
            # A tier-1 backend nobody customer-facing uses: limited impact.
            (("ledger",), "critical", Severity.SEV2,
             "ledger is tier 1, no customer-facing dependents -> up to SEV2"),
            # Internal tooling: non-critical service affected.
            (("reporting",), "critical", Severity.SEV3,
             "reporting is tier 4, internal, no customer-facing dependents -> up to SEV3"),
            # An informational anomaly stays informational.
            (("reporting",), "info", Severity.SEV4, "source severity info -> SEV4"),
            # A warning on payments: partial degradation.
            (("payments",), "warning", Severity.SEV2, "source severity warning -> SEV2"),
            # Aliases of the seeds: P1 and SEV-1 (seed 002's SEV-1 is our SEV0).
            (("storefront",), "P1", Severity.SEV1, "source severity P1 -> SEV1"),
            (("storefront",), "SEV-1", Severity.SEV0, "source severity SEV-1 -> SEV0"),
            # Nobody graded it: assume medium.
            (("storefront",), None, Severity.SEV2, "no source severity -> assume SEV2 (Medium)"),
            # Unknown impact is not capped: the source is believed.
            (("billing-legacy",), "critical", Severity.SEV0,
             "billing-legacy is not in the service catalog: impact unknown, not capped"),
        ],
    )
    def test_severity_and_reason(self, services: tuple[str, ...], source: str | None,
                                 expected: Severity, reason: str) -> None:
        """Each case lands on its matrix row and names the rule that put it there."""
        result = grade(*services, source=source)
        assert result.severity is expected, result.reasons
        assert reason in result.reasons
        assert result.reasons[-1] == f"=> {expected.value} ({expected.label})"

    def test_unrecognised_source_word_is_reported(self) -> None:
        """A severity word nobody maps is named in the reasons, and SEV2 is assumed."""
        result = classify(services=["storefront"], catalog=CATALOG,
                          source=SourceSignal(None, "purple"))
        assert result.severity is Severity.SEV2
        assert "no source severity ('purple' not recognised) -> assume SEV2 (Medium)" in (
            result.reasons)

    def test_three_services_make_it_one_level_worse(self) -> None:
        """Three affected services turn a partial degradation into a large-segment one."""
        result = grade("storefront", "checkout", "catalog", source="warning")
        assert result.severity is Severity.SEV1
        assert "3 services affected -> one level worse (SEV1)" in result.reasons

    def test_breadth_never_exceeds_the_impact_ceiling(self) -> None:
        """Three internal services stay within what internal services can do (SEV3)."""
        services = ["reporting", "reporting-2", "reporting-3"]
        catalog = CATALOG.model_validate({"services": [
            {"name": n, "tier": 4} for n in services
        ]})
        signal = SourceSignal(Severity.SEV3, "minor")
        result = classify(services=services, catalog=catalog, source=signal)
        assert result.severity is Severity.SEV3
        assert not any("one level worse" in r for r in result.reasons)

    def test_blast_radius_is_reported(self) -> None:
        """Dependents and reached customer-facing services are listed in the classification."""
        result = grade("payments")
        assert result.blast_radius.dependents == ("checkout", "reporting", "storefront")
        assert result.blast_radius.customer_facing == ("checkout", "storefront")
        assert ("blast radius: dependents checkout, reporting, storefront; "
                "reaches customer-facing checkout, storefront") in result.reasons
        assert result.customer_impact.startswith("Customers of checkout, storefront:")

    def test_internal_incident_says_no_customer_impact(self) -> None:
        """An internal service's incident says no customer-facing service is affected."""
        result = grade("reporting", source="info")
        assert result.customer_impact == (
            "No customer-facing service affected (internal: reporting): "
            "no customer impact expected (SEV4)."
        )
        assert result.auto_remediation_allowed is True


class TestForcedSeverity:
    """Data loss and security labels force SEV0 and take auto-remediation away."""

    @pytest.mark.parametrize(
        "labels",
        [{"security": "true"}, {"data_loss": "yes"}, {"category": "security"},
         {"Data-Loss": "1"}, {"type": "data_corruption"}],
    )
    def test_forcing_label(self, labels: dict[str, str]) -> None:
        """A forcing label turns an informational internal alert into SEV0, human-led."""
        result = grade("reporting", source="info", labels=labels)
        assert result.severity is Severity.SEV0
        assert result.auto_remediation_allowed is False
        assert any(r.startswith("label ") and "forces SEV0" in r for r in result.reasons)
        assert "auto-remediation disabled: a human must lead this incident" in result.reasons

    def test_false_valued_label_does_not_force(self) -> None:
        """`security=false` is not a security incident."""
        assert forcing_labels({"security": "false", "data_loss": "0"}) == ()
        assert grade("reporting", source="info", labels={"security": "false"}).severity is (
            Severity.SEV4)

    def test_customer_impact_names_the_risk(self) -> None:
        """The customer-impact text starts with the risk the label reported."""
        result = grade("payments", source="warning", labels={"data_loss": "true"})
        assert result.customer_impact.startswith("Data loss risk reported. Customers of")


class TestNeverDowngraded:
    """`at_least` keeps an open incident's severity from dropping."""

    def test_at_least_holds(self) -> None:
        """A milder signal cannot bring an open SEV1 incident down to SEV3."""
        result = grade("reporting", source="warning", at_least=Severity.SEV1)
        assert result.severity is Severity.SEV1
        assert "kept at SEV1: severity never drops while the incident is open" in result.reasons

    def test_at_least_does_not_hide_a_worse_result(self) -> None:
        """A worse signal still wins over the current severity."""
        assert grade("storefront", at_least=Severity.SEV2).severity is Severity.SEV0


class TestSourceSignal:
    """Where the source's own severity comes from."""

    def test_mapped_field_wins_and_keeps_the_raw_word(self) -> None:
        """The gateway's mapped severity is used; the raw word is kept for the reason."""
        signal = source_signal(make_alert("payments", source_severity="P0"))
        assert signal == SourceSignal(Severity.SEV0, "P0")

    def test_label_is_the_fallback(self) -> None:
        """With no severity fields, a `severity` label is parsed."""
        alert = make_alert("payments", source_severity=None, labels={"severity": "warning"})
        assert source_signal(alert) == SourceSignal(Severity.SEV2, "warning")
