"""The service catalog: services, tier, owner team, customer-facing, dependencies.

Loaded from YAML (see `demo/config/catalog.yaml`). Blast radius is computed
here, once: the dependents of a service are every service that (transitively)
depends on it, so an outage of `payments` reaches `checkout` and `storefront`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
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
    """All services, with dependency queries."""

    services: tuple[CatalogService, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> ServiceCatalog:
        """Read a catalog YAML file (`services:` list); raises on invalid content."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate(data)

    def get(self, name: str) -> CatalogService | None:
        """The service named name, or None when it is not catalogued."""
        return next((s for s in self.services if s.name == name), None)

    def dependents(self, name: str) -> set[str]:
        """Every service that depends on name, directly or transitively."""
        reverse: dict[str, set[str]] = {}
        for svc in self.services:
            for dep in svc.depends_on:
                reverse.setdefault(dep, set()).add(svc.name)
        seen: set[str] = set()
        queue = deque([name])
        while queue:
            for parent in reverse.get(queue.popleft(), ()):
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        seen.discard(name)
        return seen

    def dependencies(self, name: str) -> set[str]:
        """Every service name depends on, directly or transitively."""
        seen: set[str] = set()
        queue = deque([name])
        while queue:
            svc = self.get(queue.popleft())
            for dep in svc.depends_on if svc else ():
                if dep not in seen:
                    seen.add(dep)
                    queue.append(dep)
        seen.discard(name)
        return seen

    def related(self, a: str, b: str) -> bool:
        """True when a and b can fail for one reason: one depends (transitively) on the
        other, or both depend on a common service (payments failing breaks checkout and
        reporting, which do not depend on each other)."""
        if a == b:
            return True
        deps_a, deps_b = self.dependencies(a), self.dependencies(b)
        return b in deps_a or a in deps_b or bool(deps_a & deps_b)

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
        cached: dict[str, str] | None = getattr(self, "_component_cache", None)
        if cached is not None:
            return cached
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
        object.__setattr__(self, "_component_cache", component)
        return component
