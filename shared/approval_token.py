"""Signed approvals: what makes a HIGH-risk action runnable.

The approval service holds an Ed25519 private key and signs an `ApprovalClaims`
when a human approves; the executor holds only the public key and checks every
condition itself (ARCHITECTURE.md, safety model). An `approval.granted` event
is only a carrier: a forged, replayed, expired, self-given or mismatched token
is rejected with a reason, whatever the event around it says.

Token format: `base64url(claims JSON) "." base64url(signature over those bytes)`.
The action is bound by a digest of its canonical JSON (runbook, parameters,
target) plus the incident id, so an approval for other parameters never fits.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Container
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import AwareDatetime, ValidationError

from shared.domain import RiskTier
from shared.events import ActionSpec, Model


class ApprovalRejected(Exception):  # noqa: N818 - a domain outcome, not a programming error
    """The approval does not authorise the action; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ApprovalClaims(Model):
    """What an approver signed."""

    token_id: str
    request_id: str
    incident_id: str
    action_digest: str
    service: str
    risk: RiskTier
    approver: str
    approver_roles: tuple[str, ...]
    requested_by: str
    issued_at: AwareDatetime
    expires_at: AwareDatetime


def action_digest(action: ActionSpec, incident_id: str) -> str:
    """SHA-256 of the canonical JSON of an action bound to its incident."""
    canonical = json.dumps(
        {"incident_id": incident_id, **action.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_approval(claims: ApprovalClaims, private_key: Ed25519PrivateKey) -> str:
    """Serialise and sign claims into a token."""
    body = claims.model_dump_json().encode()
    return f"{_b64(body)}.{_b64(private_key.sign(body))}"


def verify_approval(
    token: str,
    public_key: Ed25519PublicKey,
    *,
    action: ActionSpec,
    incident_id: str,
    request_id: str,
    requested_by: str,
    required_roles: Container[str],
    now: datetime,
    used_token_ids: Container[str],
) -> ApprovalClaims:
    """Return the claims when the token authorises exactly this action now; else raise."""
    if not token:
        raise ApprovalRejected("missing signature: approval carries no token")
    try:
        body_b64, sig_b64 = token.split(".", 1)
        body, signature = _unb64(body_b64), _unb64(sig_b64)
    except ValueError as exc:
        raise ApprovalRejected("malformed token") from exc
    try:
        public_key.verify(signature, body)
    except InvalidSignature as exc:
        raise ApprovalRejected("bad signature: token not signed by the approval service") from exc
    try:
        claims = ApprovalClaims.model_validate_json(body)
    except ValidationError as exc:
        raise ApprovalRejected("malformed claims") from exc
    checks = (
        (claims.request_id == request_id, "token is for another approval request"),
        (claims.incident_id == incident_id, "token is for another incident"),
        (claims.action_digest == action_digest(action, incident_id),
         "token is for another action (runbook, parameters or target differ)"),
        (claims.expires_at > now, f"approval expired at {claims.expires_at.isoformat()}"),
        (claims.token_id not in used_token_ids, "approval already used (replay)"),
        (claims.approver not in {requested_by, claims.requested_by},
         "self-approval: approver is the requester"),
        (claims.requested_by == requested_by, "token names another requester"),
        (any(r in required_roles for r in claims.approver_roles),
         f"approver {claims.approver} lacks a role allowed to approve this action"),
    )
    for ok, reason in checks:
        if not ok:
            raise ApprovalRejected(reason)
    return claims


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """Write a new Ed25519 key pair as PEM files (private key mode 0600)."""
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key PEM."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key PEM."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError(f"{path} is not an Ed25519 public key")
    return key
