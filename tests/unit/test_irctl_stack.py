"""irctl's stack: what a scaled demo keeps in real seconds, because the world runs in them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from irctl.stack import Stack, StackConfig
from services.escalation.policy import EscalationPolicy
from services.escalation.settings import EscalationSettings
from shared.clock import SystemClock

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("time_scale", "settle"), [
    (0.02, timedelta(seconds=15)),
    (1.0, timedelta(minutes=2)),
])
def test_the_settle_window_lasts_real_seconds_in_a_scaled_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, time_scale: float, settle: timedelta
) -> None:
    """The demo world's alert rules do not scale: at 0.02 the escalation service gets a
    settle window of 15 real seconds (not 2.4 s, in which a cascade's later alerts would
    page the next tier); unscaled, DOMAIN's two minutes stand."""
    stack = Stack(StackConfig(state_dir=tmp_path, time_scale=time_scale))
    for var, value in stack._service_env("escalation").items():
        monkeypatch.setenv(var, value)
    settings = EscalationSettings()
    policy = EscalationPolicy(SystemClock(time_scale).scaled,
                              settle=timedelta(seconds=settings.settle_window_s))
    assert policy.settle_window() == settle
