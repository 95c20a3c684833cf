"""The firmware cost bench on both interpreters (figures are printed, never asserted as
timings: only their shape and the relations that must hold whatever the machine)."""

import json

import pytest

from firmware_bridge.tools import firmware_cost
from firmware_bridge.tools.firmware_bench import FIGURES, RP2040_REFERENCE_US, bench_firmware


@pytest.mark.micropython
def test_bench_runs_the_firmware_on_both_interpreters() -> None:
    result = bench_firmware(frames=200)
    assert result["cpython"]["interpreter"] == "cpython"
    assert result["micropython"]["interpreter"] == "micropython"
    for side in ("cpython", "micropython"):
        figures = result[side]
        for name in (*FIGURES, "reference_us"):
            assert figures[name]["min"] <= figures[name]["median"] <= figures[name]["max"]
        # Every authenticated frame costs at least its tag check.
        for name in ("heartbeat_frame_us", "indicator_frame_us", "relay_pulse_frame_us"):
            assert figures[name]["median"] > figures["tag_check_us"]["min"]
    rp2040 = result["rp2040_estimate"]
    scale = RP2040_REFERENCE_US / result["micropython"]["reference_us"]["median"]
    assert rp2040["scale_vs_micropython_here"] == round(scale, 1)
    assert rp2040["tick_us"] == round(result["micropython"]["tick_us"]["median"] * scale, 1)
    assert "PR #4858" in rp2040["basis"]
    json.dumps(result)  # printable as one JSON line


def test_cost_module_is_the_same_code_on_cpython() -> None:
    figures = firmware_cost.measure(100)
    assert figures["interpreter"] == "cpython" and figures["batches"] == firmware_cost.BATCHES
    assert json.loads(firmware_cost.handle("measure 100"))["frames_per_batch"] == 100
    assert "error" in json.loads(firmware_cost.handle("bogus"))


def test_too_few_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 100"):
        bench_firmware(frames=10)
