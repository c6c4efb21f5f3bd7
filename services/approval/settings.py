"""Settings of the approval service (env prefix `IR_APPROVAL_`), read in the factory only.

Paths left unset are derived from the shared `ServiceSettings`: the approvers file
lives in `config_dir`, the signing keys in `<state_dir>/keys/`. The private key is
the one secret that makes a HIGH-risk action runnable, so an explicitly configured
key that is missing is an error, never silently replaced by a fresh one.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import ServiceSettings


class ApprovalSettings(BaseSettings):
    """Approvers, signing keys, token lifetime and web-session options."""

    model_config = SettingsConfigDict(env_prefix="IR_APPROVAL_", extra="ignore")

    approvers_file: Path | None = Field(
        None, description="roles and users YAML; default <config_dir>/approvers.yaml"
    )
    users_file: Path | None = Field(
        None, description="users (name, roles, token) YAML kept apart from the role table"
    )
    private_key: Path | None = Field(
        None, description="Ed25519 private key PEM; default <state_dir>/keys/approval.pem"
    )
    public_key: Path | None = Field(
        None, description="public key PEM the executor reads; default <state_dir>/keys/approval.pub"
    )
    generate_keys: bool = Field(
        True, description="generate the key pair under <state_dir>/keys/ when it is missing"
    )
    approval_ttl_s: float = Field(
        900.0, gt=0, description="longest life of a signed approval (scaled by time_scale)"
    )
    session_ttl_s: float = Field(8 * 3600.0, gt=0, description="web sign-in lifetime (real time)")
    cookie_secure: bool = Field(False, description="mark the session cookie Secure (behind TLS)")
    http_port: int = Field(8085, description="port used when IR_HTTP_PORT is not set")

    def approvers_path(self, service: ServiceSettings) -> Path:
        """The approvers YAML in use."""
        return self.approvers_file or Path(service.config_dir) / "approvers.yaml"

    def private_key_path(self, service: ServiceSettings) -> Path:
        """Where the signing key is read (or generated)."""
        return self.private_key or Path(service.state_dir) / "keys" / "approval.pem"

    def public_key_path(self, service: ServiceSettings) -> Path:
        """Where the verification key for the executor is written."""
        return self.public_key or Path(service.state_dir) / "keys" / "approval.pub"
