"""The service catalog: services, tier, owner team, customer-facing, dependencies.

Loaded from YAML (see `demo/config/catalog.yaml`). Blast radius is computed
here, once: the dependents of a service are every service that (transitively)
depends on it, so an outage of `payments` reaches `checkout` and `storefront`.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml
from pydantic import Field

from shared.events import BlastRadius, Model


class CatalogService(Model):
    """One service of the catalog."""

    name: str
    tier: int = Field(2, ge=1, le=4, description="1 = most critical")
    team: str = "unowned"
    customer_facing: bool = False
    depends_on: tuple[str, ...] = ()
    description: str = ""


class ServiceCatalog(Model):
    """All services, with dependency queries.

    The catalog is immutable, so lookups and transitive closures are computed
    once per service and memoised: triage asks `related` for every alert
    against every open incident, and a 200-service catalog must not turn that
    into graph walks per alert.
    """

    services: tuple[CatalogService, ...] = ()

    @functools.cached_property
    def _ix(self) -> _Index:
        # A plain object, not pydantic private attributes: those cost ~3 us per
        # access, and the gateway and triage ask the catalog for every alert.
        return _Index(self.services)

    @classmethod
    def load(cls, path: str | Path) -> ServiceCatalog:
        """Read a catalog YAML file (`services:` list); raises on invalid content."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate(data)

    def get(self, name: str) -> CatalogService | None:
        """The service named name, or None when it is not catalogued."""
        return self._ix.by_name.get(name)

    def dependents(self, name: str) -> set[str]:
        """Every service that depends on name, directly or transitively."""
        return set(self._ix.dependents(name))

    def dependencies(self, name: str) -> set[str]:
        """Every service name depends on, directly or transitively."""
        return set(self._ix.dependencies(name))

    def related(self, a: str, b: str) -> bool:
        """True when a and b can fail for one reason: one depends (transitively) on the
        other, or both depend on a common service (payments failing breaks checkout and
        reporting, which do not depend on each other)."""
        if a == b:
            return True
        deps_a, deps_b = self._ix.dependencies(a), self._ix.dependencies(b)
        return b in deps_a or a in deps_b or not deps_a.isdisjoint(deps_b)

    def blast_radius(self, affected: Iterable[str]) -> BlastRadius:
        """Affected services, their dependents, and which of all those face customers."""
        hit = sorted(set(affected))
        deps = sorted(set().union(*(self.dependents(s) for s in hit)) - set(hit)) if hit else []
        facing = sorted(
            n for n in (*hit, *deps) if (s := self.get(n)) is not None and s.customer_facing
        )
        return BlastRadius(
            affected=tuple(hit), dependents=tuple(deps), customer_facing=tuple(facing)
        )

    def correlation_group(self, name: str) -> str:
        """The Kafka key for alerts of name: its connected component in the dependency graph.

        Alerts that triage may merge into one incident (related services) share
        a component, so they meet in one partition and one triage instance
        decides: no duplicate incidents under concurrency. Uncatalogued
        services are their own group.
        """
        return self._ix.components.get(name, name)


class _Index:
    """Lookups and memoised closures over an immutable list of services."""

    def __init__(self, services: Iterable[CatalogService]) -> None:
        self.by_name = {s.name: s for s in services}
        self.reverse: dict[str, set[str]] = {}
        for svc in self.by_name.values():
            for dep in svc.depends_on:
                self.reverse.setdefault(dep, set()).add(svc.name)
        self._deps: dict[str, frozenset[str]] = {}
        self._dependents: dict[str, frozenset[str]] = {}
        self.components = self._components()

    def dependencies(self, name: str) -> frozenset[str]:
        found = self._deps.get(name)
        if found is None:
            def direct(n: str) -> tuple[str, ...]:
                svc = self.by_name.get(n)
                return svc.depends_on if svc else ()
            found = self._deps[name] = _closure(name, direct)
        return found

    def dependents(self, name: str) -> frozenset[str]:
        found = self._dependents.get(name)
        if found is None:
            found = self._dependents[name] = _closure(name, lambda n: self.reverse.get(n, ()))
        return found

    def _components(self) -> dict[str, str]:
        """Catalogued service -> the smallest name of its connected component."""
        neighbours: dict[str, set[str]] = {name: set() for name in self.by_name}
        for svc in self.by_name.values():
            for dep in svc.depends_on:
                neighbours[svc.name].add(dep)
                neighbours.setdefault(dep, set()).add(svc.name)
        component: dict[str, str] = {}
        for start in sorted(neighbours):
            if start in component:
                continue
            members, queue = {start}, deque([start])
            while queue:
                for nxt in neighbours[queue.popleft()] - members:
                    members.add(nxt)
                    queue.append(nxt)
            root = min(members)
            component.update(dict.fromkeys(members, root))
        # Uncatalogued names (a dependency nobody declared) are their own group.
        return {name: root for name, root in component.items() if name in self.by_name}


def _closure(start: str, step: Callable[[str], Iterable[str]]) -> frozenset[str]:
    """Every name reachable from start by step, start excluded."""
    seen: set[str] = set()
    queue = deque([start])
    while queue:
        for nxt in step(queue.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    seen.discard(start)
    return frozenset(seen)
