"""The runbook library: one definition of every runbook, for whoever proposes and whoever runs.

A runbook is a YAML file in `shared/runbooks/`: its parameters as a JSON
Schema, preconditions, an optional backup step, action steps, a verification
and rollback steps. Steps name a backend operation (`world.restart`) and
arguments templated from the run's context (`{{ target }}`,
`{{ params.mode }}`, `{{ backup.version }}`) in the sandboxed environment
`TEMPLATES`, undefined names being errors.

Why shared: the investigator (rules today, an LLM later) proposes actions and
the executor runs them, and a proposal the investigator accepts must be
exactly one the executor accepts. Both therefore load these files and call
`RunbookLibrary.validate_action`; no service keeps its own copy of a
parameter shape. A runbook of the risk policy without a file here cannot be
proposed: there is nothing to validate it against and nothing to run.

Why so strict at load time: a mistake in a runbook must stop a service from
starting, not surface mid-incident. Loading checks the schema is a valid JSON
Schema of an object that refuses unknown properties, that every template
compiles, that the runbook has a tier in the risk policy, that a MEDIUM
runbook has the backup and rollback its tier promises and, when the loader is
told which backend operations exist (the executor is; the investigator runs
nothing and is not), that every step names one of them.

What a runbook does NOT carry is its risk tier: that comes from
`shared.policy.risk_of` alone, so neither a runbook file nor a proposal can
lower it.

Actions are validated against the schema (unknown or invalid parameters are
refused with the validator's reasons, every one of them) and normalised
(schema defaults filled in), so the action a human approves is exactly, and
completely, the action that runs. Rendering the templates is execution and
lives with the executor.
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

from shared.catalog import ServiceCatalog
from shared.domain import RiskTier
from shared.events import ActionSpec
from shared.policy import UnknownRunbook, risk_of

RUNBOOKS_DIR = Path(__file__).parent / "runbooks"
TARGET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TEMPLATES = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


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
            TEMPLATES.from_string(value)
        except TemplateError as exc:
            raise RunbookError(f"{where}: bad template {value!r}: {exc}") from exc
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_templates(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_templates(item, f"{where}[{i}]")


def parse_runbook(
    data: Any, *, source: str, operations: Iterable[str] | None = None
) -> RunbookDefinition:
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
    known = set(operations) if operations is not None else None
    for step in runbook.all_steps():
        if known is not None and step.operation not in known:
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


def _with_defaults(schema: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for key, prop in (schema.get("properties") or {}).items():
        if key not in out and isinstance(prop, Mapping) and "default" in prop:
            out[key] = prop["default"]
    return out


def _target_problems(target: str, catalog: ServiceCatalog | None) -> list[str]:
    if not TARGET_PATTERN.fullmatch(target):
        return [f"invalid target {target!r}: not a service name"]
    # No catalog, or one that lists no service, leaves the name pattern as the only check
    # (both services load the same optional file, so they skip the same way).
    if catalog is not None and catalog.services and catalog.get(target) is None:
        known = ", ".join(sorted(s.name for s in catalog.services))
        return [f"unknown target {target!r}: not in the service catalog (known: {known})"]
    return []


def _parameter_problems(runbook: RunbookDefinition, params: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(runbook.parameters)
    errors = sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.path])
    return [f"{'.'.join(str(p) for p in e.path) or 'parameters'}: {e.message}" for e in errors]


class RunbookLibrary:
    """The allow-list of runbooks that can be proposed and run, by name."""

    def __init__(self, runbooks: Iterable[RunbookDefinition]) -> None:
        self._runbooks = {r.name: r for r in runbooks}

    @classmethod
    def load(
        cls, folder: Path = RUNBOOKS_DIR, *, operations: Iterable[str] | None = None
    ) -> RunbookLibrary:
        """Load and validate every `*.yaml` in folder; raises RunbookError on the first bad one."""
        ops = set(operations) if operations is not None else None
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

    def validate_action(
        self, action: ActionSpec, catalog: ServiceCatalog | None = None
    ) -> ActionSpec:
        """The action with defaults filled in; raises InvalidProposal listing every problem."""
        try:
            risk_of(action.runbook)
        except UnknownRunbook as exc:
            raise InvalidProposal(str(exc)) from exc
        runbook = self.get(action.runbook)
        params = _with_defaults(runbook.parameters, action.parameters)
        problems = _target_problems(action.target, catalog) + _parameter_problems(runbook, params)
        service = params.get("service")
        if service is not None and service != action.target:
            problems.append(f"parameters.service {service!r} differs from the target "
                            f"{action.target!r}")
        if problems:
            raise InvalidProposal(f"invalid {action.runbook} action on {action.target!r}: "
                                  f"{'; '.join(problems)}")
        return ActionSpec(runbook=action.runbook, parameters=params, target=action.target)
