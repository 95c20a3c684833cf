"""``gatectl bench flood``: a flood of idle streams from one device leaves another gate
served (a small flood here; the README gives the 10 k figures)."""

from __future__ import annotations

from testbed.bench.flood import bench_flood


def test_a_flood_of_idle_streams_leaves_the_other_gate_served() -> None:
    result = bench_flood(streams=1000, hold_s=6.0)
    assert result["gate_verifies"] > 0
    assert result["gate_verify_failures"] == 0, result["gate_failure_kinds"]
    assert result["gate_health_failed"] == 0
    assert result["flood_codes"].get("OK", 0) == 0  # no idle stream earned a verdict
    assert result["flood_codes"].get("RESOURCE_EXHAUSTED", 0) > 900
