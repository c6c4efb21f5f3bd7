"""Reporter settings (env prefix IR_REPORTER_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReporterSettings(BaseSettings):
    """Where reports go and how often they are regenerated."""

    model_config = SettingsConfigDict(env_prefix="IR_REPORTER_", extra="ignore")

    reports_dir: str = "reports"
    catalog_path: str | None = None
    debounce_s: float = 1.0
    formats: tuple[str, ...] = ("markdown", "json", "html")
    retention_s: float = Field(
        86_400.0, gt=0,
        description="how long a resolved incident whose report is written stays in memory; "
        "later events of it are ignored",
    )
