"""Triage settings (`IR_TRIAGE_*`), read in the factory, never at import time.

Windows are given in domain seconds and multiplied by `ServiceSettings.time_scale`
(`IR_TIME_SCALE`), like every threshold of the product, so a demo can run a
five-minute correlation window in seconds without touching the rule.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import ServiceSettings


class TriageSettings(BaseSettings):
    """What triage needs besides Kafka and the common service settings."""

    model_config = SettingsConfigDict(env_prefix="IR_TRIAGE_", extra="ignore")

    correlation_window_s: float = Field(
        300.0, gt=0, description="a related alert joins an incident this long after its last alert"
    )
    recurrence_window_s: float = Field(
        86_400.0, gt=0,
        description="an alert this long after its incident was resolved marks a recurrence; "
        "resolved incidents are forgotten after it",
    )
    catalog_path: str | None = Field(
        None, description="service catalog YAML; default <IR_CONFIG_DIR>/catalog.yaml"
    )
    alert_fetch_max_wait_ms: int = Field(
        20, ge=1,
        description="poll interval of the alert consumer: alert -> incident latency floor on "
        "Tansu (which does not wake a waiting fetch)",
    )
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="names this replica's lifecycle consumer group (each replica reads all)",
    )

    def catalog_file(self, service: ServiceSettings) -> Path:
        """The catalog file to load."""
        return Path(self.catalog_path or Path(service.config_dir) / "catalog.yaml")

    def correlation_window(self, service: ServiceSettings) -> timedelta:
        """The correlation window under the service's time scale."""
        return timedelta(seconds=self.correlation_window_s) * service.time_scale

    def recurrence_window(self, service: ServiceSettings) -> timedelta:
        """The recurrence window under the service's time scale."""
        return timedelta(seconds=self.recurrence_window_s) * service.time_scale
