"""Who the humans are: approvers, their roles, and how a bearer token names one.

Design decisions:

- Users come from the `users:` section of `approvers.yaml` (or a separate users
  file in production, so tokens need not sit next to the role table). An entry
  carries either `token` (plain, fine for the demo) or `token_sha256` (hex
  digest, so the file on disk does not hold the secret).
- Tokens are compared as SHA-256 digests with `hmac.compare_digest`, against
  every user, without an early exit: the time taken does not tell an attacker
  how close a guess was nor which user it matched.
- The file is validated when loaded: a duplicate name or token, an empty token,
  or a role missing from the role table is a start-up error with the reason,
  not a user who silently cannot approve.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from shared.events import Model
from shared.policy import ApprovalPolicy


class ApproverConfigError(ValueError):
    """The approvers/users file is unusable; the message says which entry and why."""


class Approver(Model):
    """An authenticated human (or service account) and the roles they hold."""

    name: str = Field(min_length=1)
    roles: tuple[str, ...] = ()


class _UserEntry(Model):
    name: str = Field(min_length=1)
    roles: tuple[str, ...] = ()
    token: str | None = None
    token_sha256: str | None = None

    @model_validator(mode="after")
    def _one_token(self) -> _UserEntry:
        if bool(self.token) == bool(self.token_sha256):
            raise ValueError("exactly one of token or token_sha256 must be set")
        return self

    def digest(self) -> bytes:
        """The SHA-256 digest this user's bearer token must hash to."""
        if self.token:
            return hashlib.sha256(self.token.encode()).digest()
        try:
            raw = bytes.fromhex(self.token_sha256 or "")
        except ValueError as exc:
            raise ValueError("token_sha256 is not hex") from exc
        if len(raw) != hashlib.sha256().digest_size:
            raise ValueError("token_sha256 is not a SHA-256 digest")
        return raw


class ApproverDirectory:
    """The set of known users; `authenticate(token)` maps a bearer token to an Approver."""

    def __init__(self, users: Iterable[tuple[Approver, bytes]]) -> None:
        self._users = list(users)
        names = [u.name for u, _ in self._users]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ApproverConfigError(f"duplicate user names: {sorted(duplicates)}")
        digests = [d for _, d in self._users]
        if len(set(digests)) != len(digests):
            raise ApproverConfigError("two users share the same token")

    @classmethod
    def load(cls, path: str | Path, policy: ApprovalPolicy) -> ApproverDirectory:
        """Read the `users:` section of a YAML file and check it against the role table."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ApproverConfigError(f"cannot read users from {path}: {exc}") from exc
        raw_users = data.get("users", []) if isinstance(data, dict) else None
        if not isinstance(raw_users, list):
            raise ApproverConfigError(f"{path}: `users` must be a list")
        users: list[tuple[Approver, bytes]] = []
        for index, raw in enumerate(raw_users):
            try:
                entry = _UserEntry.model_validate(raw)
                digest = entry.digest()
            except (ValidationError, ValueError) as exc:
                raise ApproverConfigError(f"{path}: user #{index + 1}: {exc}") from exc
            unknown = sorted(set(entry.roles) - set(policy.roles))
            if unknown:
                raise ApproverConfigError(
                    f"{path}: user {entry.name!r} has roles not in the role table: {unknown}"
                )
            users.append((Approver(name=entry.name, roles=entry.roles), digest))
        return cls(users)

    def authenticate(self, token: str | None) -> Approver | None:
        """The user whose token this is, or None; constant time over all users."""
        if not token:
            return None
        presented = hashlib.sha256(token.encode()).digest()
        found: Approver | None = None
        for approver, digest in self._users:
            if hmac.compare_digest(presented, digest):
                found = approver
        return found

    def __len__(self) -> int:
        return len(self._users)
