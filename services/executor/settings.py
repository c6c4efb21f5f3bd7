"""Settings of the executor (env prefix `IR_EXECUTOR_`), read in the factory only.

Paths left unset are derived from the shared `ServiceSettings`, the same way the
approval service derives them: the approvers file lives in `config_dir`, the
approval public key in `<state_dir>/keys/approval.pub`, run backups in
`<state_dir>/executor/backups/`. The executor only ever reads the public key;
the private key stays with the approval service. The runbooks default to the
shared library (`shared/runbooks/`), the one the investigator validates its
proposals against; overriding `IR_EXECUTOR_RUNBOOKS_DIR` means setting
`IR_INVESTIGATOR_RUNBOOKS_DIR` to the same folder, else the two disagree on
which proposals are valid.

Every duration here is a domain threshold and is multiplied by `IR_TIME_SCALE`
(through the clock) where it is used, so a demo or a test runs the same rules
faster without changing them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.runbooks import RUNBOOKS_DIR
from shared.settings import ServiceSettings


class ExecutorSettings(BaseSettings):
    """Where the world is, where the runbooks and keys are, and the run thresholds."""

    model_config = SettingsConfigDict(env_prefix="IR_EXECUTOR_", extra="ignore")

    world_url: str = Field(
        "http://127.0.0.1:9100", description="demo world supervisor API (the HTTP action backend)"
    )
    world_timeout_s: float = Field(10.0, gt=0, description="per-request timeout of the world API")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis of the cache backend")
    redis_prefix: str = Field("demo:", description="key prefix the cache backend is confined to")
    runbooks_dir: Path = Field(
        RUNBOOKS_DIR, description="folder of runbook YAML definitions; default the shared library"
    )
    approvers_file: Path | None = Field(
        None, description="role table YAML; default <config_dir>/approvers.yaml"
    )
    catalog_file: Path | None = Field(
        None, description="service catalog YAML; default <config_dir>/catalog.yaml (optional)"
    )
    approval_public_key: Path | None = Field(
        None, description="Ed25519 public key PEM; default <state_dir>/keys/approval.pub"
    )
    backup_dir: Path | None = Field(
        None, description="where run backups are kept; default <state_dir>/executor/backups"
    )
    approval_ttl_s: float = Field(900.0, gt=0, description="life of an approval request (scaled)")
    recovery_hold_s: float = Field(
        60.0, ge=0, description="wait after a verified run before the recovery re-check (scaled)"
    )
    expiry_check_interval_s: float = Field(
        1.0, gt=0, description="how often pending approvals are checked for expiry (real time)"
    )
    verification_threshold: float | None = Field(
        None, ge=0, le=1, description="override of every runbook's error-rate threshold"
    )
    verification_consecutive: int | None = Field(
        None, ge=1, description="override of every runbook's consecutive passes"
    )
    verification_interval_s: float | None = Field(
        None, gt=0, description="override of every runbook's poll interval (scaled)"
    )
    verification_deadline_s: float | None = Field(
        None, gt=0, description="override of every runbook's verification deadline (scaled)"
    )
    step_timeout_s: float = Field(
        120.0, gt=0, description="longest a single backend call may take (real time)"
    )
    http_port: int = Field(8086, description="port used when IR_HTTP_PORT is not set")

    def approvers_path(self, service: ServiceSettings) -> Path:
        """The approvers YAML whose role table decides who may approve."""
        return self.approvers_file or Path(service.config_dir) / "approvers.yaml"

    def catalog_path(self, service: ServiceSettings) -> Path:
        """The service catalog YAML used to validate targets (skipped when absent)."""
        return self.catalog_file or Path(service.config_dir) / "catalog.yaml"

    def public_key_path(self, service: ServiceSettings) -> Path:
        """Where the approval service's public key is read."""
        return self.approval_public_key or Path(service.state_dir) / "keys" / "approval.pub"

    def backup_path(self, service: ServiceSettings) -> Path:
        """Folder of run backups (Redis dumps)."""
        return self.backup_dir or Path(service.state_dir) / "executor" / "backups"
