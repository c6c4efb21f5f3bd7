"""Unit tests of the demo world's JSON logs and scenario helpers."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from demo.world import scenario
from demo.world.logs import JsonLogWriter, normalize_level, parse_iso, read_logs, utc_iso

pytestmark = pytest.mark.unit


def test_writer_filters_by_live_level_and_reader_filters(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "payments.log"
    w = JsonLogWriter(path, "payments", "v2.4.1", "INFO")
    w.log("DEBUG", "hidden")
    w.log("INFO", "started")
    w.level = "debug"
    w.log("DEBUG", "visible now", request_id="abc")
    w.log("ERROR", "NullPointerException in PaymentProcessor.charge (version v2.4.1)", status=500)
    w.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["msg"] == "started"
    assert {"ts", "level", "service", "version", "pid", "msg"} <= set(lines[0])
    assert len(lines) == 3
    assert lines[1]["request_id"] == "abc"

    errors = read_logs(path, level="ERROR")
    assert [e["version"] for e in errors] == ["v2.4.1"]
    assert len(read_logs(path, level="WARN")) == 1
    assert [e["msg"] for e in read_logs(path, limit=1)] == [errors[0]["msg"]]
    future = datetime.now(UTC) + timedelta(minutes=1)
    assert read_logs(path, since=future) == []
    assert read_logs(tmp_path / "missing.log") == []


def test_reader_skips_garbage_and_partial_first_line(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    good = json.dumps({"ts": utc_iso(), "level": "INFO", "msg": "ok"})
    path.write_text("not json\n" + ("y" * 50) + "\n" + good + "\n")
    assert [r["msg"] for r in read_logs(path)] == ["ok"]
    assert [r["msg"] for r in read_logs(path, tail_bytes=len(good) + 10)] == ["ok"]


def test_levels_and_timestamps() -> None:
    assert normalize_level("warn") == "WARNING"
    with pytest.raises(ValueError, match="unknown log level"):
        normalize_level("LOUD")
    ts = utc_iso(datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    assert ts == "2025-01-02T03:04:05.678Z"
    assert parse_iso(ts) == datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert parse_iso("2025-01-02T03:04:05 00:00").tzinfo is not None  # "+" lost in a URL
    assert parse_iso("2025-01-02T03:04:05").tzinfo == UTC


def test_scenario_history_versions_and_messages() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    names = ["storefront", "checkout", "payments", "catalog", "reporting", "inventory"]
    history = scenario.seed_history(names, now)
    assert [d.deployed_at for d in history] == sorted(d.deployed_at for d in history)
    for name in names:
        mine = [d for d in history if d.service == name]
        assert mine[-1].version == scenario.initial_version(name)
        assert all(a.version == b.previous_version for a, b in itertools.pairwise(mine))
        assert mine[-1].deployed_at < now - timedelta(hours=1)
    assert scenario.next_version("v2.4.0", {"v2.4.1"}) == "v2.4.2"
    assert scenario.next_version("release-7", set()) == "release-7-1"
    msg = scenario.bad_deploy_error("payments", "v2.4.1")
    assert msg == "NullPointerException in PaymentProcessor.charge (version v2.4.1)"
    assert "ConnectionPool exhausted" in scenario.pool_exhausted_error("checkout", 50, 50, 200)
    assert scenario.cache_corrupt_error("demo:cache:x", "bad").startswith(
        "cache entry corrupt: key=demo:cache:x"
    )
