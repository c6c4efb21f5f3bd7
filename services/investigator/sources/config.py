"""`evidence.yaml`: which evidence sources an investigator uses, and how to reach them.

Each entry of `sources:` has a `kind` (one per integration module) and that
integration's options; URL templates may use `{world_url}` (from
`IR_INVESTIGATOR_WORLD_URL`, so one config serves every environment) and, for
per-service URLs and paths, `{service}`. An invalid file is refused at start-up
with the field that is wrong: a typo must not silently remove a source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import httpx
import yaml
from pydantic import Field

from services.investigator.evidence import EvidenceSource
from services.investigator.signals import Thresholds
from services.investigator.sources.deploys import HttpDeploySource
from services.investigator.sources.directory import (
    ServiceDirectory,
    StaticDirectory,
    WorldDirectory,
)
from services.investigator.sources.file_logs import FileLogSource
from services.investigator.sources.http_logs import HttpLogSource
from services.investigator.sources.prometheus_api import PrometheusApiSource
from services.investigator.sources.prometheus_scrape import PrometheusScrapeSource
from services.investigator.sources.world import WorldStatusSource
from shared.events import Model


class _SourceConfig(Model):
    model_config = Model.model_config | {"extra": "forbid"}
    enabled: bool = True


class WorldStatusConfig(_SourceConfig):
    """Process states from the demo world's supervisor."""

    kind: Literal["world_status"]


class PrometheusScrapeConfig(_SourceConfig):
    """Scrape each service's `/metrics`; targets discovered from the world or listed."""

    kind: Literal["prometheus_scrape"]
    discovery: Literal["world", "static"] = "world"
    targets: dict[str, str] = Field(default_factory=dict, description="static: name -> URL")
    sample_interval_s: float = Field(1.0, ge=0)


class PrometheusApiConfig(_SourceConfig):
    """A Prometheus server's `/api/v1/query`."""

    kind: Literal["prometheus_api"]
    url: str
    service_label: str = "service"
    queries: dict[str, str] | None = None


class HttpLogsConfig(_SourceConfig):
    """A JSON log API in the demo world's shape."""

    kind: Literal["http_logs"]
    url: str = "{world_url}/logs/{service}"
    error_limit: int = Field(100, ge=1)
    sample_limit: int = Field(300, ge=1)


class FileLogsConfig(_SourceConfig):
    """The tail of a local log file per service."""

    kind: Literal["file_logs"]
    path: str
    tail_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    error_limit: int = Field(100, ge=1)
    sample_limit: int = Field(300, ge=1)


class HttpDeploysConfig(_SourceConfig):
    """A deploy history API."""

    kind: Literal["http_deploys"]
    url: str = "{world_url}/deploys"


SourceConfig = Annotated[
    WorldStatusConfig | PrometheusScrapeConfig | PrometheusApiConfig | HttpLogsConfig
    | FileLogsConfig | HttpDeploysConfig,
    Field(discriminator="kind"),
]


class EvidenceConfig(Model):
    """The whole `evidence.yaml`."""

    model_config = Model.model_config | {"extra": "forbid"}

    timeout_s: float = Field(5.0, gt=0, description="deadline of each source per investigation")
    thresholds: Thresholds = Thresholds()
    sources: tuple[SourceConfig, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> EvidenceConfig:
        """Read and validate an evidence YAML file; raises on invalid content."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate(data)


def build_sources(
    config: EvidenceConfig, client: httpx.AsyncClient, world_url: str
) -> list[EvidenceSource]:
    """Source instances for every enabled entry of config."""
    sources: list[EvidenceSource] = []
    for entry in config.sources:
        if not entry.enabled:
            continue
        match entry:
            case WorldStatusConfig():
                sources.append(WorldStatusSource(client, world_url))
            case PrometheusScrapeConfig():
                directory: ServiceDirectory = (
                    WorldDirectory(client, world_url) if entry.discovery == "world"
                    else StaticDirectory(entry.targets)
                )
                sources.append(PrometheusScrapeSource(client, directory, entry.sample_interval_s))
            case PrometheusApiConfig():
                sources.append(PrometheusApiSource(client, entry.url.format(world_url=world_url),
                                                   entry.queries, entry.service_label))
            case HttpLogsConfig():
                sources.append(HttpLogSource(client, entry.url, world_url, entry.error_limit,
                                             entry.sample_limit))
            case FileLogsConfig():
                sources.append(FileLogSource(entry.path, entry.tail_bytes, entry.error_limit,
                                             entry.sample_limit))
            case HttpDeploysConfig():
                sources.append(HttpDeploySource(client, entry.url, world_url))
    return sources
