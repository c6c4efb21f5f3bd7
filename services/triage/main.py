"""Builds the triage service: settings, catalog, clock, projection, handlers."""

from __future__ import annotations

from pathlib import Path

from services.triage.correlation import PRODUCER, Triage
from services.triage.handlers import register
from services.triage.projection import IncidentBook
from services.triage.settings import TriageSettings
from shared.catalog import ServiceCatalog
from shared.clock import Clock, SystemClock
from shared.runtime import ServiceRuntime, build_runtime, run
from shared.settings import KafkaSettings, ServiceSettings


class CatalogUnavailableError(RuntimeError):
    """The service catalog could not be read: triage cannot judge impact without it."""


def load_catalog(path: Path) -> ServiceCatalog:
    """Read the service catalog, or fail with a message that names the file and the problem."""
    try:
        return ServiceCatalog.load(path)
    except FileNotFoundError as exc:
        raise CatalogUnavailableError(
            f"service catalog {path} not found (set IR_TRIAGE_CATALOG_PATH or IR_CONFIG_DIR)"
        ) from exc
    except Exception as exc:  # YAML or schema errors: report them, do not start half-blind
        raise CatalogUnavailableError(f"service catalog {path} is invalid: {exc}") from exc


def create_runtime(
    *,
    kafka: KafkaSettings | None = None,
    settings: ServiceSettings | None = None,
    triage: TriageSettings | None = None,
    catalog: ServiceCatalog | None = None,
    clock: Clock | None = None,
) -> ServiceRuntime:
    """The triage service, ready for `start`/`run`."""
    settings = settings or ServiceSettings()
    triage = triage or TriageSettings()
    catalog = catalog if catalog is not None else load_catalog(triage.catalog_file(settings))
    runtime = build_runtime(PRODUCER, kafka=kafka, settings=settings)
    engine = Triage(
        book=IncidentBook(recurrence_window=triage.recurrence_window(settings)),
        catalog=catalog,
        clock=clock or SystemClock(settings.time_scale),
        correlation_window=triage.correlation_window(settings),
    )
    register(runtime, engine, instance_id=triage.instance_id,
             alert_fetch_max_wait_ms=triage.alert_fetch_max_wait_ms)
    return runtime


def main() -> None:
    """Entry point of `python -m services.triage`."""
    try:
        runtime = create_runtime()
    except CatalogUnavailableError as exc:
        raise SystemExit(f"triage: {exc}") from exc
    run(runtime)
