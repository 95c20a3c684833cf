"""What the gate's /metrics counts per traveller served."""

from __future__ import annotations

import pytest

from appliance.gate.outcome import Outcome, TravellerOutcome
from appliance.screens.metrics import GateMetrics


def test_captures_taken_again_are_counted() -> None:
    metrics = GateMetrics()
    metrics.traveller_served(TravellerOutcome(Outcome.GRANTED, "match", "c2", True))
    metrics.traveller_served(
        TravellerOutcome(Outcome.GRANTED, "match", "c4", True, earlier_capture_ids=("c3",))
    )
    assert metrics.registry.get_sample_value("gate_captures_retaken_total") == 1.0


def test_every_capture_sent_is_timed_not_only_the_last() -> None:
    """A traveller taken again was sent twice: both captures and both verifies count."""
    metrics = GateMetrics()
    metrics.traveller_served(
        TravellerOutcome(
            Outcome.GRANTED,
            "match",
            "c2",
            True,
            capture_ms=900.0,
            verify_ms=300.0,
            earlier_capture_ids=("c1",),
            earlier_timings=((700.0, 250.0),),
        )
    )
    sample = metrics.registry.get_sample_value
    assert sample("gate_capture_seconds_count") == 2.0
    assert sample("gate_capture_seconds_sum") == pytest.approx(1.6)
    assert sample("gate_verify_seconds_count") == 2.0
    assert sample("gate_verify_seconds_sum") == pytest.approx(0.55)
