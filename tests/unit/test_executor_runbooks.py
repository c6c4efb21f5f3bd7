"""Unit tests of the shared runbook library as the executor loads it, and of step templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.executor.backends.redis_keys import RedisBackend
from services.executor.backends.world import WorldBackend
from services.executor.execution import render
from shared.catalog import CatalogService, ServiceCatalog
from shared.domain import RiskTier
from shared.events import ActionSpec
from shared.runbooks import (
    RUNBOOKS_DIR,
    InvalidProposal,
    RunbookError,
    RunbookLibrary,
    parse_runbook,
)

pytestmark = pytest.mark.unit

OPERATIONS = {f"{b.name}.{op}" for b in (WorldBackend, RedisBackend) for op in b.operations}
CATALOG = ServiceCatalog(services=tuple(CatalogService(name=name) for name in (
    "storefront", "checkout", "payments", "catalog", "reporting")))


def _library() -> RunbookLibrary:
    return RunbookLibrary.load(RUNBOOKS_DIR, operations=OPERATIONS)


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "cache_invalidation",
        "description": "test",
        "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}},
        "backup": {"name": "dump", "operation": "redis.dump", "args": {"pattern": "x"}},
        "steps": [{"name": "delete", "operation": "redis.delete",
                   "args": {"pattern": "{{ params.pattern }}", "backup": "{{ backup.ref }}"}}],
        "verification": {"kind": "error_rate"},
        "rollback": [{"name": "restore", "operation": "redis.restore",
                      "args": {"backup": "{{ backup.ref }}"}}],
        "expected_impact": "misses",
        "rollback_plan": "restore",
    }
    doc.update(overrides)
    return doc


class TestLibraryLoading:
    def test_shipped_runbooks_load_with_their_policy_tiers(self) -> None:
        """The four first runbooks load, and each tier is the policy table's."""
        library = _library()
        assert library.names() == ["cache_invalidation", "log_level_change",
                                   "rollback_deployment", "service_restart"]
        assert library.get("service_restart").risk is RiskTier.HIGH
        assert library.get("rollback_deployment").risk is RiskTier.HIGH
        assert library.get("cache_invalidation").risk is RiskTier.MEDIUM
        assert library.get("log_level_change").risk is RiskTier.LOW

    def test_medium_runbooks_ship_backup_and_rollback(self) -> None:
        """cache_invalidation dumps before it deletes and restores on rollback."""
        runbook = _library().get("cache_invalidation")
        assert runbook.backup is not None
        assert runbook.backup.operation == "redis.dump"
        assert [s.operation for s in runbook.rollback] == ["redis.restore"]

    def test_unknown_operation_is_refused_at_load(self) -> None:
        """A step naming an operation no backend offers stops the load, naming the step."""
        doc = _doc(steps=[{"name": "nuke", "operation": "redis.flushall"}])
        with pytest.raises(RunbookError, match=r"nuke.*redis\.flushall"):
            parse_runbook(doc, source="x.yaml", operations=OPERATIONS)

    def test_runbook_without_policy_tier_is_refused(self) -> None:
        """A runbook whose name is not in the risk policy cannot be loaded."""
        with pytest.raises(RunbookError, match="not in the risk policy"):
            parse_runbook(_doc(name="format_disks"), source="x.yaml", operations=OPERATIONS)

    def test_a_runbook_file_cannot_declare_its_own_risk(self) -> None:
        """A `risk:` key in a runbook is refused: the tier comes from the policy only."""
        with pytest.raises(RunbookError, match="risk"):
            parse_runbook(_doc(risk="LOW"), source="x.yaml", operations=OPERATIONS)

    def test_medium_runbook_without_backup_is_refused(self) -> None:
        """MEDIUM promises a rollback prepared first: no backup step, no load."""
        with pytest.raises(RunbookError, match="MEDIUM runbook needs a backup"):
            parse_runbook(_doc(backup=None), source="x.yaml", operations=OPERATIONS)

    def test_broken_template_is_refused(self) -> None:
        """A template that does not compile stops the load."""
        doc = _doc(steps=[{"name": "delete", "operation": "redis.delete",
                           "args": {"pattern": "{{ params.pattern "}}])
        with pytest.raises(RunbookError, match="bad template"):
            parse_runbook(doc, source="x.yaml", operations=OPERATIONS)

    def test_parameters_must_be_an_object_schema(self) -> None:
        """Parameters are a JSON Schema of an object; anything else is refused."""
        with pytest.raises(RunbookError, match="type object"):
            parse_runbook(_doc(parameters={"type": "string"}), source="x.yaml",
                          operations=OPERATIONS)

    def test_file_name_must_match_runbook_name(self, tmp_path: Path) -> None:
        """A file whose runbook name differs from its file name is refused."""
        (tmp_path / "other.yaml").write_text(yaml.safe_dump(_doc()))
        with pytest.raises(RunbookError, match="differs from the file name"):
            RunbookLibrary.load(tmp_path, operations=OPERATIONS)

    def test_empty_folder_is_refused(self, tmp_path: Path) -> None:
        """An executor with no runbooks refuses to start."""
        with pytest.raises(RunbookError, match="no runbooks"):
            RunbookLibrary.load(tmp_path, operations=OPERATIONS)


class TestProposalValidation:
    def test_defaults_are_filled_into_the_action(self) -> None:
        """The normalised action carries schema defaults, so approval binds the full action."""
        action = _library().validate_action(
            ActionSpec(runbook="service_restart", target="payments"), CATALOG)
        assert action.parameters == {"mode": "graceful"}

    def test_unknown_parameter_is_rejected(self) -> None:
        """A parameter the schema does not name is refused, with its name in the reason."""
        with pytest.raises(InvalidProposal, match="'force_all' was unexpected"):
            _library().validate_action(ActionSpec(
                runbook="service_restart", target="payments",
                parameters={"mode": "force", "force_all": True}), CATALOG)

    def test_invalid_enum_value_is_rejected(self) -> None:
        """A value outside the schema's enum is refused."""
        with pytest.raises(InvalidProposal, match="mode"):
            _library().validate_action(ActionSpec(
                runbook="service_restart", target="payments",
                parameters={"mode": "reboot-the-host"}), CATALOG)

    def test_cache_pattern_outside_cache_namespace_is_rejected(self) -> None:
        """cache_invalidation may only match keys under `cache:`."""
        with pytest.raises(InvalidProposal, match="pattern"):
            _library().validate_action(ActionSpec(
                runbook="cache_invalidation", target="catalog",
                parameters={"pattern": "*"}), CATALOG)

    def test_service_parameter_must_equal_target(self) -> None:
        """parameters.service that names another service than the target is refused."""
        with pytest.raises(InvalidProposal, match="differs from the target"):
            _library().validate_action(ActionSpec(
                runbook="service_restart", target="payments",
                parameters={"service": "checkout"}), CATALOG)

    def test_investigator_shapes_are_accepted(self) -> None:
        """Parameters as the investigator proposes them (with `service`) validate."""
        library = _library()
        for action in (
            ActionSpec(runbook="cache_invalidation", target="catalog",
                       parameters={"service": "catalog", "pattern": "cache:*"}),
            ActionSpec(runbook="rollback_deployment", target="payments",
                       parameters={"service": "payments", "to_version": "v2.3.3"}),
            ActionSpec(runbook="log_level_change", target="payments",
                       parameters={"service": "payments", "level": "INFO"}),
            ActionSpec(runbook="service_restart", target="payments",
                       parameters={"service": "payments", "mode": "force"}),
        ):
            assert library.validate_action(action, CATALOG).target == action.target

    def test_unknown_target_is_rejected(self) -> None:
        """A target that is not in the service catalog is refused."""
        with pytest.raises(InvalidProposal, match="not in the service catalog"):
            _library().validate_action(ActionSpec(runbook="service_restart",
                                              target="mainframe"), CATALOG)

    def test_target_with_path_characters_is_rejected(self) -> None:
        """A target that could steer a URL elsewhere is refused even without a catalog."""
        with pytest.raises(InvalidProposal, match="invalid target"):
            _library().validate_action(ActionSpec(runbook="service_restart",
                                              target="../admin"), None)

    def test_runbook_outside_library_is_rejected(self) -> None:
        """A runbook that has no definition cannot be proposed."""
        with pytest.raises(InvalidProposal, match="not in the runbook library"):
            _library().validate_action(ActionSpec(runbook="database_failover",
                                              target="payments"), CATALOG)


class TestTemplates:
    def test_render_fills_parameters_and_backup(self) -> None:
        """Arguments are rendered from target, parameters and backup output."""
        ctx = {"target": "payments", "params": {"level": "DEBUG"}, "backup": {"level": "INFO"}}
        assert render({"s": "{{ target }}", "now": "{{ params.level }}",
                       "was": "{{ backup.level }}", "n": 3}, ctx) == {
            "s": "payments", "now": "DEBUG", "was": "INFO", "n": 3}

    def test_undefined_name_is_an_error(self) -> None:
        """A template that reads a missing value fails instead of rendering empty."""
        with pytest.raises(RunbookError, match=r"has no attribute .version."):
            render("{{ backup.version }}", {"backup": {}})

    def test_sandbox_blocks_attribute_escapes(self) -> None:
        """Templates cannot reach Python internals."""
        with pytest.raises(RunbookError):
            render("{{ target.__class__.__mro__[1].__subclasses__() }}", {"target": "x"})
