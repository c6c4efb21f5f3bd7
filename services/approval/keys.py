"""The signing key pair: loaded, or generated for local runs.

The approval service is the only holder of the Ed25519 private key; the
executor reads the public key file. Rules:

- An explicitly configured private key that is missing is an error: replacing
  a production key with a fresh one would silently invalidate every approval
  and hand the executor a key it does not trust.
- The default key (`<state_dir>/keys/approval.pem`) is generated when missing
  and generation is allowed (the default for local runs).
- The public key file is always made to match the private key: written when
  missing; when it holds another key it is rewritten if keys are generated
  locally, otherwise start-up fails (the executor would reject every token).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.approval.settings import ApprovalSettings
from shared.approval_token import generate_keypair, load_private_key
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


class SigningKeyError(RuntimeError):
    """The signing key is missing or inconsistent; the message says what to do."""


def _public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signing_key(settings: ApprovalSettings, service: ServiceSettings) -> Ed25519PrivateKey:
    """The private key to sign approvals with; its public key is on disk for the executor."""
    private_path = settings.private_key_path(service)
    public_path = settings.public_key_path(service)
    if not private_path.exists():
        if settings.private_key is not None:
            raise SigningKeyError(
                f"IR_APPROVAL_PRIVATE_KEY points to {private_path}, which does not exist"
            )
        if not settings.generate_keys:
            raise SigningKeyError(
                f"no signing key at {private_path}; set IR_APPROVAL_PRIVATE_KEY or "
                "IR_APPROVAL_GENERATE_KEYS=true"
            )
        public_path.parent.mkdir(parents=True, exist_ok=True)
        generate_keypair(private_path, public_path)
        log.warning("generated a new approval signing key pair in %s", private_path.parent)
    try:
        key = load_private_key(private_path)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot read the signing key {private_path}: {exc}") from exc
    _publish_public_key(key, public_path, rewrite=settings.generate_keys)
    return key


def _publish_public_key(key: Ed25519PrivateKey, path: Path, *, rewrite: bool) -> None:
    expected = _public_pem(key)
    current = path.read_bytes() if path.exists() else None
    if current == expected:
        return
    if current is not None and not rewrite:
        raise SigningKeyError(
            f"{path} holds another public key than the signing key's; the executor would "
            "reject every approval"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(expected)
    log.info("wrote the approval public key to %s", path)
