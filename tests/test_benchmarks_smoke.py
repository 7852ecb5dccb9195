"""The benchmark suite runs end to end (tiny N, so it cannot rot). No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import TARGETS, evaluate, main

EXPECTED_METRICS = {
    "core.sign_verify",
    "runtime.local_signed", "runtime.local_unsigned", "runtime.local_verified",
    "runtime.fanout_50", "runtime.tcp_signed", "runtime.idle_tick_4",
    "network.local", "network.local_signed", "network.tcp", "network.tcp_signed",
    "tasks.indexed_N8", "tasks.indexed_N16", "tasks.indexed_N32", "tasks.naive-scan_N16",
}
EXPECTED_LIMITS = {
    "limits.queue_rt", "limits.queue_fanout_50", "limits.loop_tick", "limits.tcp_echo_rt",
    "limits.ed25519_sign", "limits.ed25519_verify", "limits.msgpack_rt", "limits.handoff_rt",
}


def test_every_benchmark_runs_once_and_every_target_is_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "bench.json"
    assert main(["--smoke", "--json", str(out_path)]) == 0
    table = capsys.readouterr().out
    out = json.loads(out_path.read_text())

    assert set(out["limits"]) == EXPECTED_LIMITS
    assert all(rate > 0 for rate in out["limits"].values())
    assert EXPECTED_METRICS <= set(out["results"])
    assert all(r["rate"] > 0 for r in out["results"].values())

    rows = {row["label"]: row for row in out["targets"]}
    for target in TARGETS:
        assert target.label in rows, f"no row for {target.label}"
    for row in out["targets"]:
        assert row["ratio"] > 0 and row["limit_rate"] > 0
        expected = "info" if row["target"] is None else ("PASS" if row["ratio"] >= row["target"] else "MISS")
        assert row["status"] == expected
        assert row["label"] in table
    paired = [r for r in out["targets"] if r.get("paired")]
    assert {r["metric"] for r in paired} >= {"core.sign_verify", "runtime.local_signed", "runtime.fanout_50",
                                             "runtime.tcp_signed"}
    assert "Targets" in table and out["command"] == "python -m benchmarks --smoke"


def test_a_paired_ratio_wins_over_the_limits_table() -> None:
    limits = {"limits.queue_rt": 100_000.0, "limits.ed25519_sign": 10_000.0, "limits.handoff_rt": 50_000.0}
    results = {
        "runtime.local_unsigned": {"rate": 30_000.0, "unit": "round trips", "ratio": 0.2, "limit_rate": 150_000.0},
        "runtime.local_signed": {"rate": 3_000.0, "unit": "round trips"},
    }
    rows = {r["metric"]: r for r in evaluate(results, limits) if r["target"] is not None}
    assert rows["runtime.local_unsigned"]["ratio"] == 0.2 and rows["runtime.local_unsigned"]["status"] == "MISS"
    # unpaired: 3,000 rt/s against 1 / (2/10,000 + 1/100,000) = 4,762 rt/s
    assert rows["runtime.local_signed"]["ratio"] == pytest.approx(0.63)
    assert rows["runtime.local_signed"]["status"] == "PASS"
