"""Service catalog: dependencies, dependents, relatedness, blast radius, correlation groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.catalog import CatalogService, ServiceCatalog

pytestmark = pytest.mark.unit
DEMO = ServiceCatalog.load(Path(__file__).resolve().parents[2] / "demo/config/catalog.yaml")


class TestGraph:
    def test_dependencies_and_dependents_are_transitive(self) -> None:
        """storefront -> checkout -> payments: both directions see the whole chain."""
        assert DEMO.dependencies("storefront") == {"checkout", "payments", "catalog"}
        assert DEMO.dependents("payments") == {"checkout", "storefront", "reporting"}

    @pytest.mark.parametrize(("a", "b", "related"), [
        ("storefront", "payments", True),    # depends transitively
        ("payments", "checkout", True),      # reverse direction
        ("reporting", "storefront", True),   # both depend on payments
        ("catalog", "reporting", False),     # nothing in common
        ("catalog", "catalog", True),
    ])
    def test_related_means_one_failure_can_explain_both(
        self, a: str, b: str, related: bool
    ) -> None:
        """Services are related when one depends on the other or both share a dependency."""
        assert DEMO.related(a, b) is related

    def test_blast_radius_lists_customer_facing_dependents(self) -> None:
        """A payments outage reaches the customer-facing checkout and storefront."""
        radius = DEMO.blast_radius(["payments"])
        assert radius.dependents == ("checkout", "reporting", "storefront")
        assert radius.customer_facing == ("checkout", "storefront")

    def test_correlation_group_is_the_connected_component(self) -> None:
        """Related services share a Kafka key; strangers are their own group."""
        catalog = ServiceCatalog(services=(
            CatalogService(name="a", depends_on=("b",)), CatalogService(name="b"),
            CatalogService(name="c"),
        ))
        assert catalog.correlation_group("a") == catalog.correlation_group("b") == "a"
        assert catalog.correlation_group("c") == "c"
        assert catalog.correlation_group("unknown") == "unknown"

    def test_an_undeclared_dependency_is_its_own_group_but_still_links(self) -> None:
        """a and b both depend on x, which nobody declared: a and b share a group, x has its own."""
        catalog = ServiceCatalog(services=(
            CatalogService(name="a", depends_on=("x",)), CatalogService(name="b", depends_on=("x",)),
        ))
        assert catalog.correlation_group("a") == catalog.correlation_group("b")
        assert catalog.correlation_group("x") == "x"
        assert catalog.related("a", "b")
