"""`make bench` says when the Alertmanager side-by-side did not run, and why."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bench.run_all import alertmanager_skipped, headline

pytestmark = pytest.mark.unit


def _fake_binary(directory: Path, name: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_no_binary_on_path_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = alertmanager_skipped(refused=False)
    assert reason is not None
    assert "prometheus-alertmanager" in reason
    assert "not on PATH" in reason


@pytest.mark.parametrize("name", ["prometheus-alertmanager", "alertmanager"])
def test_a_binary_on_path_is_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _fake_binary(tmp_path, name)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert alertmanager_skipped(refused=False) is None


def test_the_flag_wins_over_a_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_binary(tmp_path, "prometheus-alertmanager")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert alertmanager_skipped(refused=True) == "--no-alertmanager"


def test_the_summary_carries_the_reason() -> None:
    ingest = {"runs": [], "ratio_gateway_to_alertmanager": {}, "alertmanager_skipped": "why"}
    assert headline({"ingest": ingest})["alertmanager_skipped"] == "why"
    del ingest["alertmanager_skipped"]
    assert "alertmanager_skipped" not in headline({"ingest": ingest})
