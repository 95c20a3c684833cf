"""What the gate's /metrics counts per traveller served."""

from __future__ import annotations

from appliance.gate.outcome import Outcome, TravellerOutcome
from appliance.screens.metrics import GateMetrics


def test_captures_taken_again_are_counted() -> None:
    metrics = GateMetrics()
    metrics.traveller_served(TravellerOutcome(Outcome.GRANTED, "match", "c2", True))
    metrics.traveller_served(
        TravellerOutcome(Outcome.GRANTED, "match", "c4", True, earlier_capture_ids=("c3",))
    )
    assert metrics.registry.get_sample_value("gate_captures_retaken_total") == 1.0
