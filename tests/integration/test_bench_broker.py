"""`python -m bench.broker` runs against a fresh embedded broker and reports every cost per step."""

from __future__ import annotations

import json

import pytest

from bench import broker

pytestmark = pytest.mark.integration


def test_the_broker_benchmark_prints_one_row_per_size(capsys: pytest.CaptureFixture[str]) -> None:
    broker.main(["--sizes", "50,100", "--batch", "5", "--samples", "3"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["benchmark"] == "broker"
    rows = result["rows"]
    # Each step grows the partition to its size, in batches of 5, before measuring.
    assert [row["records"] for row in rows] == [50, 100]
    assert [row["record_batches"] for row in rows] == [10, 20]
    for row in rows:
        for cost in ("list_offsets_ms", "fetch_ms", "produce_ms", "commit_ms"):
            assert row[cost] >= 0
