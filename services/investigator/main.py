"""Builds the investigator service: settings, catalog, runbook library, evidence, investigator, bus.

`IR_INVESTIGATOR_KIND` selects the investigator; each kind is one entry of
`INVESTIGATORS`, so the LLM investigator of a later issue is one more entry
with the same `Investigator` protocol. A kind that is not available fails at
start-up with a clear message rather than silently running another one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx

from services.investigator.casebook import CaseBook
from services.investigator.evidence import EvidenceCollector
from services.investigator.handlers import InvestigationDesk, routes, subscribe
from services.investigator.investigation import Investigator
from services.investigator.rules import RuleBasedInvestigator
from services.investigator.settings import InvestigatorSettings
from services.investigator.sources.config import EvidenceConfig, build_sources
from shared.catalog import ServiceCatalog
from shared.clock import Clock, SystemClock
from shared.redaction import PatternRedactor
from shared.runbooks import RunbookLibrary
from shared.runtime import ServiceRuntime, build_runtime, run
from shared.settings import KafkaSettings, ServiceSettings

SERVICE = "investigator"

InvestigatorFactory = Callable[
    [EvidenceCollector, Clock, InvestigatorSettings, EvidenceConfig], Investigator
]


class InvestigatorUnavailable(RuntimeError):  # noqa: N818 - reads as the domain outcome it is
    """The configured investigator kind cannot run."""


def _rules(
    collector: EvidenceCollector, clock: Clock, settings: InvestigatorSettings,
    config: EvidenceConfig,
) -> Investigator:
    return RuleBasedInvestigator(collector, clock,
                                 lookback=timedelta(minutes=settings.lookback_minutes),
                                 min_window=timedelta(seconds=settings.min_lookback_s),
                                 thresholds=config.thresholds)


INVESTIGATORS: dict[str, InvestigatorFactory] = {"rules": _rules}


def build_investigator(
    settings: InvestigatorSettings, collector: EvidenceCollector, clock: Clock,
    config: EvidenceConfig,
) -> Investigator:
    """The investigator IR_INVESTIGATOR_KIND names; raises InvestigatorUnavailable otherwise."""
    factory = INVESTIGATORS.get(settings.kind)
    if factory is None:
        raise InvestigatorUnavailable(
            f"IR_INVESTIGATOR_KIND={settings.kind!r} is not available in this build; "
            f"available: {', '.join(sorted(INVESTIGATORS))}"
        )
    return factory(collector, clock, settings, config)


def create_runtime(
    *,
    kafka: KafkaSettings | None = None,
    settings: ServiceSettings | None = None,
    investigator_settings: InvestigatorSettings | None = None,
    clock: Clock | None = None,
    investigator: Investigator | None = None,
) -> ServiceRuntime:
    """The investigator service, ready for `start`/`run`."""
    settings = settings or ServiceSettings()
    inv = investigator_settings or InvestigatorSettings()
    config_dir = Path(settings.config_dir)
    catalog = ServiceCatalog.load(inv.catalog or config_dir / "catalog.yaml")
    library = RunbookLibrary.load(inv.runbooks_dir)
    evidence = EvidenceConfig.load(inv.evidence_config or config_dir / "evidence.yaml")
    clock = clock or SystemClock(settings.time_scale)
    client = httpx.AsyncClient(timeout=inv.http_timeout_s, follow_redirects=True)
    collector = EvidenceCollector(build_sources(evidence, client, inv.world_url),
                                  timeout_s=evidence.timeout_s)
    investigator = investigator or build_investigator(inv, collector, clock, evidence)

    runtime = build_runtime(SERVICE, kafka=kafka, settings=settings)
    casebook = CaseBook(producer=SERVICE)
    desk = InvestigationDesk(bus=runtime.bus, casebook=casebook, investigator=investigator,
                             catalog=catalog, library=library, redactor=PatternRedactor(),
                             clock=clock, settings=inv)
    subscribe(runtime.bus, desk)
    routes(runtime.http, casebook)
    runtime.on_start.append(desk.restore)
    runtime.on_stop.append(client.aclose)
    return runtime


def main() -> None:
    """Run the investigator until SIGTERM."""
    run(create_runtime())
