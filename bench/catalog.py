"""A generated service catalog of 200 services with a known dependency graph.

Design decisions:

- **Domains of eight services.** A domain (`orders`, `payments`, ...) has a
  request path (`db`, `cache` <- `api` <- `web`), an asynchronous path
  (`queue` <- `worker` <- `reports`) and a lone `exporter`.
- **Clusters of three domains.** A domain's `api` may depend on the `api` of
  earlier domains *of its cluster* (so the graph stays a DAG): a
  `payments-db` outage reaches `accounts-web`, as in production, while the
  request paths of different clusters stay apart. The catalog therefore has
  59 connected components of different sizes (request clusters of 12
  services, asynchronous paths of 3, lone exporters): enough independent
  places for a storm's true incidents, big and small.
- **Teams come from the demo on-call schedule** (`payments`, `web`, `data`), so
  the escalation service can page for every generated service.
- **Deterministic from a seed**: the harness and the load generator rebuild
  the same catalog independently.
"""

from __future__ import annotations

import random
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import yaml

from shared.catalog import CatalogService, ServiceCatalog

DOMAINS: tuple[str, ...] = (
    "payments", "accounts", "auth", "inventory", "pricing", "catalog", "cart", "checkout",
    "orders", "shipping", "search", "reviews", "recommendations", "promotions", "media",
    "notifications", "billing", "fraud", "support", "loyalty", "returns", "warehouse",
    "ads", "messaging", "analytics",
)
CLUSTER_SIZE = 3
ROLES: tuple[str, ...] = ("db", "cache", "api", "web", "queue", "worker", "reports", "exporter")
#: Domains whose web front end faces customers.
CUSTOMER_FACING = frozenset({
    "accounts", "auth", "catalog", "cart", "checkout", "orders", "search", "reviews",
    "recommendations", "media", "support", "returns",
})
TIER_1 = frozenset({"payments", "auth", "checkout", "orders", "cart", "inventory"})
DATA_DOMAINS = frozenset({"analytics", "ads", "recommendations", "warehouse"})
WEB_DOMAINS = frozenset({
    "accounts", "catalog", "search", "reviews", "media", "support", "promotions",
    "notifications", "messaging", "returns", "loyalty",
})
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "demo" / "config"


@dataclass(frozen=True)
class BenchCatalog:
    """The generated catalog plus the dependency indexes the scenarios need."""

    catalog: ServiceCatalog
    dependents: dict[str, frozenset[str]]
    depth_from: dict[str, dict[str, int]]

    @property
    def names(self) -> list[str]:
        """Every service name, in catalog order."""
        return [s.name for s in self.catalog.services]

    def role(self, service: str) -> str:
        """The role part of a generated name (`orders-api` -> `api`)."""
        return service.rsplit("-", 1)[1]

    def component(self, service: str) -> str:
        """The connected component (correlation group) of a service."""
        return self.catalog.correlation_group(service)

    def closure(self, root: str) -> frozenset[str]:
        """The root and every service that depends on it, transitively."""
        return self.dependents[root] | {root}


def generate_catalog(seed: int = 7, domains: int = len(DOMAINS)) -> BenchCatalog:
    """The 8 x `domains` service catalog (200 services by default), deterministic in seed."""
    if not 1 <= domains <= len(DOMAINS):
        raise ValueError(f"domains must be between 1 and {len(DOMAINS)}, got {domains}")
    rng = random.Random(seed)
    chosen = DOMAINS[:domains]
    services: list[CatalogService] = []
    for index, domain in enumerate(chosen):
        earlier = chosen[index - index % CLUSTER_SIZE: index]
        upstream = sorted(rng.sample(earlier, k=min(len(earlier), rng.choice((1, 1, 2)))))
        tier = 1 if domain in TIER_1 else rng.choice((2, 2, 3))
        team = _team(domain)
        facing = domain in CUSTOMER_FACING
        deps = {
            "db": (), "cache": (), "queue": (), "exporter": (),
            "api": (f"{domain}-db", f"{domain}-cache", *(f"{u}-api" for u in upstream)),
            "web": (f"{domain}-api",),
            "worker": (f"{domain}-queue",),
            "reports": (f"{domain}-worker",),
        }
        for role in ROLES:
            services.append(CatalogService(
                name=f"{domain}-{role}",
                tier=_role_tier(role, tier),
                team=team,
                customer_facing=facing and role == "web",
                depends_on=deps[role],
                description=f"{role} of the {domain} domain (generated for benchmarks)",
            ))
    catalog = ServiceCatalog(services=tuple(services))
    reverse: dict[str, set[str]] = {s.name: set() for s in services}
    for svc in services:
        for dep in svc.depends_on:
            reverse[dep].add(svc.name)
    depth_from = {s.name: _depths(s.name, reverse) for s in services}
    dependents = {name: frozenset(d) - {name} for name, d in depth_from.items()}
    return BenchCatalog(catalog=catalog, dependents=dependents, depth_from=depth_from)


def write_config_dir(target: Path, bench: BenchCatalog) -> Path:
    """A config dir: the demo's files (on-call, approvers, ...) with the generated catalog."""
    target.mkdir(parents=True, exist_ok=True)
    for item in DEMO_CONFIG.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    data = {"services": [s.model_dump(mode="json") for s in bench.catalog.services]}
    (target / "catalog.yaml").write_text(
        "# Generated by bench.catalog: 200 services, known dependency graph.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return target


def _team(domain: str) -> str:
    if domain in DATA_DOMAINS:
        return "data"
    if domain in WEB_DOMAINS:
        return "web"
    return "payments"


def _role_tier(role: str, domain_tier: int) -> int:
    if role in ("reports", "exporter"):
        return 4
    if role in ("queue", "worker"):
        return min(domain_tier + 1, 4)
    return domain_tier


def _depths(root: str, reverse: dict[str, set[str]]) -> dict[str, int]:
    """Hop count from root to each service that depends on it (root itself at 0)."""
    depth = {root: 0}
    queue = deque([root])
    while queue:
        current = queue.popleft()
        for parent in sorted(reverse[current]):
            if parent not in depth:
                depth[parent] = depth[current] + 1
                queue.append(parent)
    return depth
