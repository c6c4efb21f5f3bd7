"""Redis as an action backend: invalidate cache keys with a real, restorable backup.

Design:

- Confinement. Every pattern is taken relative to the configured prefix (the
  demo world's `demo:`), with the prefix's own glob characters escaped, so a
  runbook or a proposal can never reach keys outside that namespace.
- Backup first. `dump` SCANs the pattern and stores each key's `DUMP` payload
  and `PTTL` in a backup file (`<backup_dir>/<ref>.json`, mode 0600) before
  anything is deleted. The file, not the event log, holds the values: cache
  entries may carry customer data, which must not land in the audit trail
  forever. The step's output names the backup (`ref`) and its keys.
- `delete` re-SCANs and DUMPs any key that appeared since the backup into the
  same backup before deleting, so every deleted key is restorable.
- `restore` puts every key back with `RESTORE ... REPLACE` and its remaining
  TTL (none when it had none).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.executor.backends import ActionBackend, BackendError, require

_GLOB = re.compile(r"([*?\[\]\\])")
_SHOWN_KEYS = 100


class RedisBackend(ActionBackend):
    """SCAN, DUMP, DEL and RESTORE keys under one prefix."""

    name: ClassVar[str] = "redis"
    operations: ClassVar[frozenset[str]] = frozenset({"ping", "dump", "delete", "restore", "count"})

    def __init__(self, url: str, *, prefix: str, backup_dir: Path,
                 client: aioredis.Redis | None = None) -> None:
        self._redis = client or aioredis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5
        )
        self.prefix = prefix
        self.backup_dir = backup_dir

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def call(
        self, operation: str, args: Mapping[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Run one Redis operation."""
        if operation not in self.operations:
            raise BackendError(f"redis backend has no operation {operation!r}")
        try:
            match operation:
                case "ping":
                    await self._redis.ping()
                    return {"reachable": True}
                case "count":
                    keys = await self._scan(require(args, "pattern"))
                    return {"pattern": self._full(require(args, "pattern")), "count": len(keys)}
                case "dump":
                    return await self._dump(require(args, "pattern"), ref=idempotency_key)
                case "delete":
                    return await self._delete(require(args, "pattern"), ref=require(args, "backup"))
                case _:  # "restore"
                    return await self._restore(require(args, "backup"))
        except RedisError as exc:
            raise BackendError(f"redis {operation} failed: {type(exc).__name__}: {exc}") from exc

    def _full(self, pattern: str) -> str:
        return _GLOB.sub(r"\\\1", self.prefix) + pattern

    async def _scan(self, pattern: str) -> list[bytes]:
        return [key async for key in self._redis.scan_iter(match=self._full(pattern), count=500)]

    async def _entry(self, key: bytes) -> dict[str, Any] | None:
        payload = await self._redis.dump(key)
        if payload is None:  # expired or deleted between SCAN and DUMP
            return None
        pttl = int(await self._redis.pttl(key))
        return {"key": _b64(key), "value": _b64(payload), "pttl": pttl}

    async def _dump(self, pattern: str, *, ref: str) -> dict[str, Any]:
        entries = [e for e in [await self._entry(k) for k in await self._scan(pattern)] if e]
        self._write(ref, {"pattern": self._full(pattern), "entries": entries,
                          "created_at": datetime.now(UTC).isoformat()})
        return {"ref": ref, "pattern": self._full(pattern), **_summary(entries)}

    async def _delete(self, pattern: str, *, ref: str) -> dict[str, Any]:
        backup = self._read(ref)
        saved = {e["key"] for e in backup["entries"]}
        keys = await self._scan(pattern)
        late = [k for k in keys if _b64(k) not in saved]
        if late:
            extra = [e for e in [await self._entry(k) for k in late] if e]
            backup["entries"].extend(extra)
            self._write(ref, backup)
        deleted = int(await self._redis.delete(*keys)) if keys else 0
        return {"pattern": self._full(pattern), "deleted": deleted,
                "keys": [_text(k) for k in keys[:_SHOWN_KEYS]], "backed_up_late": len(late)}

    async def _restore(self, ref: str) -> dict[str, Any]:
        backup = self._read(ref)
        restored = 0
        for entry in backup["entries"]:
            pttl = int(entry["pttl"])
            await self._redis.restore(
                _unb64(entry["key"]), max(pttl, 0), _unb64(entry["value"]), replace=True
            )
            restored += 1
        return {"ref": ref, "restored": restored}

    def _path(self, ref: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", ref):
            raise BackendError(f"invalid backup reference {ref!r}")
        return self.backup_dir / f"{ref}.json"

    def _write(self, ref: str, backup: dict[str, Any]) -> None:
        path = self._path(ref)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(backup, fh)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except OSError as exc:
            raise BackendError(f"cannot write backup {path}: {exc}") from exc

    def _read(self, ref: str) -> dict[str, Any]:
        path = self._path(ref)
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackendError(f"backup {ref} unreadable at {path}: {exc}") from exc
        data.setdefault("entries", [])
        return data


def _summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [_text(_unb64(e["key"])) for e in entries]
    return {"count": len(keys), "keys": keys[:_SHOWN_KEYS]}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _text(key: bytes) -> str:
    return key.decode(errors="replace")
