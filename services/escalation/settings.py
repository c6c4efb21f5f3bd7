"""Settings of the escalation service (`IR_ESCALATION_*`), built in the factory."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class EscalationSettings(BaseSettings):
    """Where the schedule lives, how often deadlines are checked, and how to reach people."""

    model_config = SettingsConfigDict(env_prefix="IR_ESCALATION_", extra="ignore")

    oncall_file: str | None = Field(None, description="default: <IR_CONFIG_DIR>/oncall.yaml")
    catalog_file: str | None = Field(None, description="default: <IR_CONFIG_DIR>/catalog.yaml")
    tick_s: float = Field(1.0, gt=0, description="how often deadlines and retries are checked")
    ui_url: str = Field("http://127.0.0.1:8080", description="approval UI, linked from pages")
    max_send_attempts: int = Field(5, ge=1, description="attempts per message before giving up")
    settle_window_s: float = Field(
        120.0, ge=0,
        description="after an incident opens, how long joining services and a rising severity "
        "are its first picture (a cascade alerting over its sources' evaluation cycles), not "
        "a worsening that escalates; scaled by IR_TIME_SCALE like every threshold",
    )
    retention_s: float = Field(
        86_400.0, gt=0,
        description="how long a resolved incident with nothing left to send stays in memory "
        "(and in GET /escalations/{id}) before it is forgotten",
    )

    smtp_host: str | None = Field(None, description="SMTP relay; e-mail is off when unset")
    smtp_port: int = 25
    smtp_from: str = "incidents@localhost"
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(10.0, gt=0)

    webhook_enabled: bool = True
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_attempts: int = Field(3, ge=1, description="tries inside one attempt (5xx, network)")

    def oncall_path(self, config_dir: str) -> Path:
        """The on-call schedule file."""
        return Path(self.oncall_file or Path(config_dir) / "oncall.yaml")

    def catalog_path(self, config_dir: str) -> Path:
        """The service catalog file."""
        return Path(self.catalog_file or Path(config_dir) / "catalog.yaml")
