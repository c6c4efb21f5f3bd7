"""The story of the demo world: versions, deploy history, and what failures look like.

Everything an investigator reads should look like a real shop's telemetry, so
this module holds the flavour text in one place: the seeded deploy history
(a few deploys over the last days, the latest a few hours ago, plus an
unrelated recent deploy as a red herring), the change descriptions of the
injected bad deploys, and the error messages each failure mode logs.

Services of `demo/config/catalog.yaml` get hand-written entries; any other
service name falls back to generic but plausible text, so the world runs with
any catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

CACHE_SERVICES = frozenset({"catalog"})
"""Services that read through the Redis cache (and can suffer a stuck cache)."""

ENTRY_POINTS: dict[str, float] = {"storefront": 0.6, "catalog": 0.2, "reporting": 0.2}
"""Services the traffic generator calls directly, with their share of the requests."""

INITIAL_VERSIONS = {
    "storefront": "v5.12.3",
    "checkout": "v3.8.0",
    "payments": "v2.4.0",
    "catalog": "v1.19.2",
    "reporting": "v0.9.7",
}

_BAD_CODE_PATH = {
    "storefront": "ProductPage.render",
    "checkout": "OrderService.placeOrder",
    "payments": "PaymentProcessor.charge",
    "catalog": "ProductRepository.findById",
    "reporting": "SettlementReport.build",
}

_BAD_CHANGE = {
    "storefront": "Lazy-load product recommendations on the product page (#9120)",
    "checkout": "Move basket validation into OrderService (#2290)",
    "payments": "Refactor PaymentProcessor.charge retry handling (#4812)",
    "catalog": "Switch ProductRepository to the new pricing schema (#733)",
    "reporting": "Add currency breakdown to the settlement report (#318)",
}

_SPIKE_ERROR = {
    "storefront": "template rendering failed: upstream session store timed out after 3000 ms",
    "checkout": "database query timed out after 3000 ms (db=orders-primary)",
    "payments": "card processor acquirer-eu timed out after 3000 ms (HTTP 504)",
    "catalog": "search index query timed out after 3000 ms (index=products-v7)",
    "reporting": "warehouse query timed out after 3000 ms (cluster=dwh-reporting)",
}

# (version, hours ago, author, change) per service, oldest first; the last is current.
_HISTORY: dict[str, list[tuple[str, float, str, str]]] = {
    "storefront": [
        ("v5.12.1", 76.0, "lena.b", "Responsive header for small screens (#9087)"),
        ("v5.12.2", 30.5, "lena.b", "Fix cookie banner on Safari (#9101)"),
        ("v5.12.3", 1.6, "ci-bot", "Bump frontend dependencies (renovate)"),
    ],
    "checkout": [
        ("v3.7.4", 98.0, "omar.s", "Gift-card balance check (#2241)"),
        ("v3.8.0", 26.0, "omar.s", "Split shipping and billing addresses (#2266)"),
    ],
    "payments": [
        ("v2.3.2", 71.0, "maria.k", "Idempotency keys for refunds (#4701)"),
        ("v2.3.3", 45.0, "ci-bot", "Rotate acquirer TLS client certificate"),
        ("v2.4.0", 5.2, "maria.k", "Upgrade card-network SDK to 7.2 (#4790)"),
    ],
    "catalog": [
        ("v1.19.1", 50.0, "jun.w", "Cache product listings in Redis (#702)"),
        ("v1.19.2", 8.0, "jun.w", "Longer TTL for category pages (#719)"),
    ],
    "reporting": [
        ("v0.9.6", 120.0, "priya.n", "Nightly settlement export to S3 (#301)"),
        ("v0.9.7", 3.1, "priya.n", "Retry warehouse queries on timeout (#311)"),
    ],
}


@dataclass(frozen=True)
class SeedDeploy:
    """One deploy of the seeded history."""

    service: str
    version: str
    previous_version: str
    deployed_at: datetime
    author: str
    change: str


def initial_version(service: str) -> str:
    """The version a service runs when the world starts."""
    return INITIAL_VERSIONS.get(service, "v1.0.0")


def seed_history(services: list[str], now: datetime) -> list[SeedDeploy]:
    """A plausible deploy history for the services, oldest first, ending at their versions."""
    seeds: list[SeedDeploy] = []
    for name in services:
        entries = _HISTORY.get(
            name,
            [
                ("v0.9.0", 72.0, "ci-bot", f"Initial release of {name}"),
                ("v1.0.0", 6.0, "ci-bot", f"Routine dependency upgrades for {name}"),
            ],
        )
        previous = _previous_patch(entries[0][0])
        for version, hours, author, change in entries:
            seeds.append(
                SeedDeploy(name, version, previous, now - timedelta(hours=hours), author, change)
            )
            previous = version
    return sorted(seeds, key=lambda d: d.deployed_at)


def _previous_patch(version: str) -> str:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not match:
        return version + "-prev"
    major, minor, patch = (int(g) for g in match.groups())
    if patch > 0:
        return f"v{major}.{minor}.{patch - 1}"
    return f"v{major}.{max(minor - 1, 0)}.9"


def next_version(current: str, taken: set[str]) -> str:
    """The next patch version after current that is not in taken."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", current)
    if not match:
        candidate, n = current + "-1", 1
        while candidate in taken:
            n += 1
            candidate = f"{current}-{n}"
        return candidate
    major, minor, patch = (int(g) for g in match.groups())
    patch += 1
    while f"v{major}.{minor}.{patch}" in taken:
        patch += 1
    return f"v{major}.{minor}.{patch}"


def bad_deploy_change(service: str) -> str:
    """The change description of an injected bad deploy."""
    return _BAD_CHANGE.get(service, f"Refactor request handling in {service}")


def bad_deploy_error(service: str, version: str) -> str:
    """The ERROR message a bad version logs on each failed request."""
    where = _BAD_CODE_PATH.get(service, f"{service.title()}Handler.handle")
    return f"NullPointerException in {where} (version {version})"


def error_spike_error(service: str) -> str:
    """The ERROR message of an error spike (no deploy involved)."""
    return _SPIKE_ERROR.get(service, f"database query timed out after 3000 ms (db={service}-db)")


def pool_exhausted_error(service: str, in_use: int, size: int, waited_ms: int) -> str:
    """The ERROR message of a leaked connection pool."""
    return (
        f"ConnectionPool exhausted: {in_use}/{size} connections in use, "
        f"waited {waited_ms} ms (pool={service}-db)"
    )


def cache_corrupt_error(key: str, reason: str) -> str:
    """The ERROR message of a poisoned cache entry."""
    return f"cache entry corrupt: key={key} ({reason})"
