"""Reporter service: folds every lifecycle event into timelines and writes reports."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.reporter.handlers import INPUTS, register
from services.reporter.publisher import ReportDesk
from services.reporter.settings import ReporterSettings
from shared.catalog import ServiceCatalog
from shared.clock import SystemClock
from shared.runtime import ServiceRuntime, build_runtime, run
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic


def create_runtime(
    *,
    kafka: KafkaSettings | None = None,
    settings: ServiceSettings | None = None,
    reporter: ReporterSettings | None = None,
) -> ServiceRuntime:
    """Build the reporter: bus, desk, start-up replay."""
    runtime = build_runtime("reporter", kafka=kafka, settings=settings)
    cfg = reporter or ReporterSettings()
    catalog_path = cfg.catalog_path or str(Path(runtime.settings.config_dir) / "catalog.yaml")
    desk = ReportDesk(
        reports_dir=Path(cfg.reports_dir),
        catalog=ServiceCatalog.load(catalog_path),
        clock=SystemClock(runtime.settings.time_scale),
        publish=runtime.bus.publish,
        debounce_s=cfg.debounce_s,
        formats=cfg.formats,
        retention=timedelta(seconds=cfg.retention_s),
    )
    register(runtime.bus, desk)

    async def rebuild() -> None:
        await runtime.bus.restore([*INPUTS, Topic.REPORT_PUBLISHED], desk.fold)
        await desk.catch_up()

    runtime.on_start.append(rebuild)
    runtime.on_stop.append(desk.flush)
    runtime.components["desk"] = desk
    return runtime


def main() -> None:
    """Run the reporter until SIGTERM."""
    run(create_runtime())
