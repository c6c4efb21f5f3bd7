"""Action backends: the only code that touches the infrastructure.

A runbook step names an operation as `<backend>.<operation>` (e.g.
`world.restart`, `redis.delete`) with arguments already rendered from the
proposal's parameters. Each backend is one module behind the small
`ActionBackend` base: it declares the operations it offers (so a runbook that
names an unknown operation fails at load time, not mid-incident), and runs one
with `call`, returning a JSON-able dict that becomes the step's output and, for
backup steps, the `backup` the rollback templates read.

Every call carries an idempotency key derived from (run, step), so a backend
that supports it can recognise a repeated request. Backends raise
`BackendError` with a human-readable reason for any failure; the executor turns
that into a failed step, never into a crashed service.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar


class BackendError(Exception):
    """An operation failed; the message says what and why, for the step's output."""


class ActionBackend(ABC):
    """One integration with the infrastructure (demo world, Redis, Kubernetes, ...)."""

    name: ClassVar[str]
    operations: ClassVar[frozenset[str]]

    @abstractmethod
    async def call(
        self, operation: str, args: Mapping[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Run operation with args; return its output or raise BackendError."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections (optional)."""


def split_operation(qualified: str) -> tuple[str, str]:
    """`"world.restart"` -> `("world", "restart")`; raises ValueError when malformed."""
    backend, sep, operation = qualified.partition(".")
    if not sep or not backend or not operation:
        raise ValueError(f"operation {qualified!r} must read '<backend>.<operation>'")
    return backend, operation


def require(args: Mapping[str, Any], name: str) -> str:
    """A required string argument of an operation, or BackendError."""
    value = args.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BackendError(f"missing argument {name!r}")
    return str(value)
