"""Investigator settings (`IR_INVESTIGATOR_*`), read from the environment in the factory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.runbooks import RUNBOOKS_DIR


class InvestigatorSettings(BaseSettings):
    """How the investigator finds evidence and how long it may look."""

    model_config = SettingsConfigDict(env_prefix="IR_INVESTIGATOR_", extra="ignore")

    kind: Literal["rules", "llm"] = Field("rules", description="which Investigator runs")
    world_url: str = Field("http://127.0.0.1:9100",
                           description="demo world supervisor; fills {world_url} in evidence.yaml")
    evidence_config: str | None = Field(None, description="default <IR_CONFIG_DIR>/evidence.yaml")
    catalog: str | None = Field(None, description="default <IR_CONFIG_DIR>/catalog.yaml")
    runbooks_dir: Path = Field(
        RUNBOOKS_DIR, description="runbook library proposals are validated against; must be "
                                  "the executor's IR_EXECUTOR_RUNBOOKS_DIR (default: the shared "
                                  "library for both)")
    lookback_minutes: float = Field(30.0, gt=0,
                                    description="deploy window before the first anomaly "
                                                "(multiplied by IR_TIME_SCALE)")
    min_lookback_s: float = Field(
        120.0, ge=0, description="floor of the scaled window: a fast demo clock must not hide "
                                 "a deploy made a minute before the alert")
    investigation_timeout_s: float = Field(30.0, gt=0, description="deadline per investigation")
    opened_wait_s: float = Field(
        2.0, ge=0, description="how long a classification waits for its incident.opened")
    http_timeout_s: float = Field(3.0, gt=0, description="timeout of each HTTP request")
