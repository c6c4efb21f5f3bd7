"""Runbooks as declarative definitions, validated when they are loaded.

A runbook is a YAML file in `services/executor/runbooks/`: its parameters as
a JSON Schema, preconditions, an optional backup step, action steps, a
verification and rollback steps. Steps name a backend operation
(`world.restart`) and arguments templated from the run's context with a
sandboxed Jinja2 environment (`{{ target }}`, `{{ params.mode }}`,
`{{ backup.version }}`), undefined names being errors.

Why so strict at load time: a mistake in a runbook must stop the executor from
starting, not surface mid-incident. Loading therefore checks the schema is a
valid JSON Schema of an object that refuses unknown properties, that every
operation exists in a configured backend, that every template compiles, that
the runbook has a tier in the risk policy, and that a MEDIUM runbook has the
backup and rollback its tier promises.

What a runbook does NOT carry is its risk tier: that comes from
`shared.policy.risk_of` alone, so neither a runbook file nor a proposal can
lower it.

Proposals are validated against the schema (unknown or invalid parameters are
refused with the validator's reasons) and normalised (schema defaults filled
in), so the action a human approves is exactly, and completely, the action
that runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.domain import RiskTier
from shared.events import ActionSpec
from shared.policy import UnknownRunbook, risk_of

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
TARGET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class RunbookError(ValueError):
    """A runbook file is invalid; the message names the file and the problem."""


class InvalidProposal(ValueError):  # noqa: N818 - a domain outcome, like UnknownRunbook
    """A proposed action does not fit its runbook (unknown runbook, bad target or parameters)."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepSpec(_Spec):
    """One step: a backend operation and its templated arguments."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    operation: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    args: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @property
    def backend(self) -> str:
        """The backend part of the operation."""
        return self.operation.split(".", 1)[0]

    @property
    def action(self) -> str:
        """The operation part, within its backend."""
        return self.operation.split(".", 1)[1]


class VerificationSpec(_Spec):
    """How recovery is checked after the action, and for how long."""

    kind: Literal["error_rate", "log_level"]
    service: str = "{{ target }}"
    threshold: float = Field(0.05, ge=0, le=1, description="error rate below which a check passes")
    expect: str | None = Field(None, description="expected value for kind log_level")
    consecutive: int = Field(3, ge=1, description="passing checks in a row needed")
    interval_s: float = Field(2.0, gt=0, description="between checks (scaled)")
    deadline_s: float = Field(60.0, gt=0, description="give up after (scaled)")
    degrade_margin: float = Field(
        0.10, ge=0, le=1,
        description="fail early when the error rate stays this far above its pre-action baseline",
    )


class RunbookDefinition(_Spec):
    """A declarative runbook, as loaded from YAML."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    preconditions: tuple[StepSpec, ...] = ()
    backup: StepSpec | None = None
    steps: tuple[StepSpec, ...] = Field(min_length=1)
    verification: VerificationSpec
    rollback: tuple[StepSpec, ...] = ()
    expected_impact: str
    rollback_plan: str
    resolves_incident: bool = Field(
        True, description="verified success resolves the incident (false for diagnostics)"
    )

    def all_steps(self) -> Iterable[StepSpec]:
        """Every step of every phase."""
        yield from self.preconditions
        if self.backup is not None:
            yield self.backup
        yield from self.steps
        yield from self.rollback

    @property
    def risk(self) -> RiskTier:
        """The policy tier (never from the file itself)."""
        return risk_of(self.name)


def _closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown properties refused unless it says otherwise explicitly."""
    if schema.get("type") != "object":
        raise RunbookError("parameters must be a JSON Schema of type object")
    return {"additionalProperties": False, **schema}


def _check_templates(value: Any, where: str) -> None:
    if isinstance(value, str):
        try:
            _ENV.from_string(value)
        except TemplateError as exc:
            raise RunbookError(f"{where}: bad template {value!r}: {exc}") from exc
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_templates(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_templates(item, f"{where}[{i}]")


def parse_runbook(data: Any, *, source: str, operations: Iterable[str]) -> RunbookDefinition:
    """Validate one runbook document; raises RunbookError naming source and problem."""
    try:
        runbook = RunbookDefinition.model_validate(data)
    except ValidationError as exc:
        raise RunbookError(f"{source}: {exc}") from exc
    try:
        runbook.risk  # noqa: B018 - the lookup is the check
    except UnknownRunbook as exc:
        raise RunbookError(f"{source}: {exc}; add it to shared.policy.RISK_POLICY") from exc
    try:
        schema = _closed_schema(runbook.parameters)
        jsonschema.Draft202012Validator.check_schema(schema)
    except (RunbookError, jsonschema.SchemaError) as exc:
        raise RunbookError(f"{source}: invalid parameters schema: {exc}") from exc
    runbook = runbook.model_copy(update={"parameters": schema})
    known = set(operations)
    for step in runbook.all_steps():
        if step.operation not in known:
            raise RunbookError(f"{source}: step {step.name!r} uses unknown operation "
                               f"{step.operation!r} (known: {', '.join(sorted(known))})")
        _check_templates(step.args, f"{source}: step {step.name}")
    _check_templates(runbook.verification.service, f"{source}: verification.service")
    _check_templates(runbook.verification.expect, f"{source}: verification.expect")
    if runbook.verification.kind == "log_level" and not runbook.verification.expect:
        raise RunbookError(f"{source}: verification of kind log_level needs 'expect'")
    if runbook.risk is RiskTier.MEDIUM and (runbook.backup is None or not runbook.rollback):
        raise RunbookError(f"{source}: a MEDIUM runbook needs a backup step and rollback steps")
    return runbook


class RunbookLibrary:
    """The allow-list of runbooks the executor can run, by name."""

    def __init__(self, runbooks: Iterable[RunbookDefinition]) -> None:
        self._runbooks = {r.name: r for r in runbooks}

    @classmethod
    def load(cls, folder: Path, *, operations: Iterable[str]) -> RunbookLibrary:
        """Load and validate every `*.yaml` in folder; raises RunbookError on the first bad one."""
        ops = set(operations)
        runbooks: list[RunbookDefinition] = []
        files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
        if not files:
            raise RunbookError(f"no runbooks found in {folder}")
        for path in files:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise RunbookError(f"{path}: unreadable: {exc}") from exc
            runbook = parse_runbook(data, source=str(path), operations=ops)
            if runbook.name != path.stem:
                raise RunbookError(f"{path}: name {runbook.name!r} differs from the file name")
            runbooks.append(runbook)
        return cls(runbooks)

    def names(self) -> list[str]:
        """Names of every runbook."""
        return sorted(self._runbooks)

    def get(self, name: str) -> RunbookDefinition:
        """The runbook called name; raises InvalidProposal when there is none."""
        try:
            return self._runbooks[name]
        except KeyError as exc:
            raise InvalidProposal(f"runbook {name!r} is not in the runbook library "
                                  f"(available: {', '.join(self.names())})") from exc


def _with_defaults(schema: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for key, prop in (schema.get("properties") or {}).items():
        if key not in out and isinstance(prop, Mapping) and "default" in prop:
            out[key] = prop["default"]
    return out


def validate_parameters(runbook: RunbookDefinition, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters with defaults filled in; raises InvalidProposal listing every error."""
    filled = _with_defaults(runbook.parameters, params)
    validator = jsonschema.Draft202012Validator(runbook.parameters)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.path) or 'parameters'}: {e.message}" for e in errors[:5]
        )
        raise InvalidProposal(f"invalid parameters for {runbook.name}: {details}")
    return filled


def validate_target(target: str, known_services: Iterable[str] | None) -> None:
    """Check a target names a service (strict name pattern, and in the catalog when given)."""
    if not TARGET_PATTERN.fullmatch(target):
        raise InvalidProposal(f"invalid target {target!r}: not a service name")
    if known_services is not None:
        known = set(known_services)
        if target not in known:
            raise InvalidProposal(f"unknown target {target!r}: not in the service catalog "
                                  f"(known: {', '.join(sorted(known))})")


def normalise_action(
    library: RunbookLibrary, action: ActionSpec, known_services: Iterable[str] | None = None
) -> tuple[RunbookDefinition, ActionSpec]:
    """The runbook and the complete action for a proposal; raises InvalidProposal."""
    runbook = library.get(action.runbook)
    validate_target(action.target, known_services)
    params = validate_parameters(runbook, action.parameters)
    if "service" in params and params["service"] != action.target:
        raise InvalidProposal(f"parameters.service {params['service']!r} differs from the "
                              f"target {action.target!r}")
    return runbook, ActionSpec(runbook=action.runbook, parameters=params, target=action.target)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in value as a sandboxed template; other values pass through."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            return _ENV.from_string(value).render(context)
        except TemplateError as exc:
            raise RunbookError(f"template {value!r} failed: {exc}") from exc
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value
