"""The service catalog: services, tier, owner team, customer-facing, dependencies.

Loaded from YAML (see `demo/config/catalog.yaml`). Blast radius is computed
here, once: the dependents of a service are every service that (transitively)
depends on it, so an outage of `payments` reaches `checkout` and `storefront`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml
from pydantic import Field, PrivateAttr

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
    _by_name: dict[str, CatalogService] = PrivateAttr(default_factory=dict)
    _reverse: dict[str, set[str]] = PrivateAttr(default_factory=dict)
    _deps: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)
    _dependents: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)
    _component_cache: dict[str, str] | None = PrivateAttr(default=None)

    def model_post_init(self, context: object, /) -> None:
        """Index services by name and dependency edges in reverse."""
        self._by_name = {s.name: s for s in self.services}
        for svc in self.services:
            for dep in svc.depends_on:
                self._reverse.setdefault(dep, set()).add(svc.name)

    @classmethod
    def load(cls, path: str | Path) -> ServiceCatalog:
        """Read a catalog YAML file (`services:` list); raises on invalid content."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate(data)

    def get(self, name: str) -> CatalogService | None:
        """The service named name, or None when it is not catalogued."""
        return self._by_name.get(name)

    def dependents(self, name: str) -> set[str]:
        """Every service that depends on name, directly or transitively."""
        if name not in self._dependents:
            self._dependents[name] = _closure(name, lambda n: self._reverse.get(n, ()))
        return set(self._dependents[name])

    def dependencies(self, name: str) -> set[str]:
        """Every service name depends on, directly or transitively."""
        return set(self._dependencies(name))

    def _dependencies(self, name: str) -> frozenset[str]:
        if name not in self._deps:
            def direct(n: str) -> tuple[str, ...]:
                svc = self._by_name.get(n)
                return svc.depends_on if svc else ()
            self._deps[name] = _closure(name, direct)
        return self._deps[name]

    def related(self, a: str, b: str) -> bool:
        """True when a and b can fail for one reason: one depends (transitively) on the
        other, or both depend on a common service (payments failing breaks checkout and
        reporting, which do not depend on each other)."""
        if a == b:
            return True
        deps_a, deps_b = self._dependencies(a), self._dependencies(b)
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
        if self.get(name) is None:
            return name
        return self._components().get(name, name)

    def _components(self) -> dict[str, str]:
        if self._component_cache is not None:
            return self._component_cache
        neighbours: dict[str, set[str]] = {s.name: set() for s in self.services}
        for svc in self.services:
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
        self._component_cache = component
        return component


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
