"""Reporter settings (env prefix IR_REPORTER_)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ReporterSettings(BaseSettings):
    """Where reports go and how often they are regenerated."""

    model_config = SettingsConfigDict(env_prefix="IR_REPORTER_", extra="ignore")

    reports_dir: str = "reports"
    catalog_path: str | None = None
    debounce_s: float = 1.0
    formats: tuple[str, ...] = ("markdown", "json", "html")
