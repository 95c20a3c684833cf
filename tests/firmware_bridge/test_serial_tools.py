"""Tests of the serial check, the serial bench and the fuzzer, on both interpreters.

Nothing on the serial line is mocked; no assertion depends on wall-clock time.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.protocol import Indicator, Result
from firmware_bridge.simulator import Simulator
from firmware_bridge.tools.bench import FuzzHarness, bench_serial
from firmware_bridge.tools.serial_check import TEST_PULSE_MS, run_serial_test

KEY = b"serial-tools-key-0123456789abcd!"


@pytest.fixture
def sim(interpreter: str) -> Iterator[Simulator]:
    with Simulator(KEY, interpreter=interpreter) as s:
        yield s


def run(port: str, key: bytes = KEY, **kw: object) -> tuple[bool, list[str]]:
    lines: list[str] = []
    ok = run_serial_test(port, key, out=lines.append, dwell=0, **kw)
    return ok, lines


# ----------------------------------------------------------------- serial check


def test_serial_check_without_pulse_never_touches_relay(sim: Simulator) -> None:
    ok, lines = run(sim.port)
    assert ok, lines
    text = "\n".join(lines)
    assert "[FAIL]" not in text
    assert "[PASS] HELLO" in text
    assert "[PASS] status" in text
    for pattern in Indicator.ALL:
        assert f"[PASS] indicator {Indicator.name(pattern)}" in text
    assert "[PASS] buzzer" in text
    assert "[SKIP] relay pulse" in text
    assert lines[-1].endswith("PASSED (11/11 steps passed)")
    assert sim.relay_pulses == [] and sim.relay_history == []
    assert len(sim.buzzes) == 1
    assert sim.indicator == Indicator.OFF  # restored to what it was after HELLO


def test_serial_check_with_pulse(sim: Simulator) -> None:
    ok, lines = run(sim.port, pulse=True)
    assert ok, lines
    assert any(line.startswith("[PASS] relay pulse") for line in lines)
    assert sim.relay_pulses == [TEST_PULSE_MS]
    assert sim.relay_history == [True, False]
    assert lines[-1].endswith("PASSED (12/12 steps passed)")


def test_serial_check_wrong_key_fails_at_the_greeting(sim: Simulator) -> None:
    """Under another key the MCU's STATUS never verifies: the check stops at HELLO,
    names the likely cause and never gets as far as a pulse."""
    ok, lines = run(sim.port, key=b"wrong-key-000000000000000000000!", pulse=True)
    assert not ok
    (fail,) = [line for line in lines if line.startswith("[FAIL]")]
    assert "HELLO" in fail and "verified" in fail and "wrong relay key" in fail
    assert sim.relay_history == []
    assert "FAILED" in lines[-1]


def test_serial_check_missing_port(tmp_path: Path) -> None:
    port = str(tmp_path / "ttyNOPE")
    ok, lines = run(port)
    assert not ok
    assert lines[0].startswith(f"[FAIL] open {port} and HELLO: link error: cannot open")
    assert "Traceback" not in "\n".join(lines)
    assert "FAILED" in lines[-1]


def test_serial_check_short_key(sim: Simulator) -> None:
    ok, lines = run(sim.port, key=b"short")
    assert not ok
    assert lines[0].startswith("[FAIL] relay key: HMAC key must be at least 16 bytes")


def test_serial_check_link_dies_midway(sim: Simulator) -> None:
    """Port vanishes after the first indicator: clear FAIL line, no exception."""
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        if "indicator OFF" in line:
            sim.stop()

    assert not run_serial_test(sim.port, KEY, out=out, dwell=0)
    fails = [line for line in lines if line.startswith("[FAIL]")]
    assert len(fails) == 1 and "link error" in fails[0]


# ------------------------------------------------------------------------ bench


def test_bench_serial_small(interpreter: str) -> None:
    result = bench_serial(rounds=20, fuzz_frames=400, seed=3, interpreter=interpreter)
    assert result["interpreter"] == interpreter
    for key in (
        "rtt_ms_p50",
        "rtt_ms_p99",
        "rounds",
        "frames_fuzzed",
        "relay_opened_by_fuzz",
        "retransmissions",
    ):
        assert key in result
    assert result["rounds"] == 20
    assert result["frames_fuzzed"] == 400
    assert result["relay_opened_by_fuzz"] == 0
    assert 0 < result["rtt_ms_p50"] <= result["rtt_ms_p99"] <= result["rtt_ms_max"]
    assert result["control_pulse_opened_relay"] is True
    # Forged and replayed pulses really reached the authentication / freshness checks.
    assert result["fuzz_pulse_results"].get("REJECTED_AUTH", 0) > 0
    assert result["fuzz_pulse_results"].get("REJECTED_STALE", 0) > 0
    assert "OK" not in result["fuzz_pulse_results"]


def test_bench_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        bench_serial(rounds=0)
    with pytest.raises(ValueError):
        bench_serial(rounds=1, fuzz_frames=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz_never_opens_relay_but_a_genuine_pulse_does(seed: int, interpreter: str) -> None:
    with FuzzHarness(seed=seed, interpreter=interpreter) as harness:
        assert harness.run(1500) == 0
        assert harness.frames_fed == 1500
        assert not harness.firmware.state.relay_open
        # Same harness, same session: a fresh authenticated pulse is counted.
        assert harness.inject_valid_pulse() == Result.OK
        assert harness.relay_opened == 1
        assert harness.firmware.state.relay_open


@pytest.mark.micropython
def test_fuzz_is_reproducible_and_the_same_on_both_interpreters() -> None:
    """One seed, one key: the same hostile stream gets byte-for-byte the same answers on
    CPython and on MicroPython."""
    key = b"fixed-fuzz-key-0123456789abcdef!"
    runs = []
    for interpreter in ("cpython", "cpython", "micropython"):
        with FuzzHarness(key, seed=7, interpreter=interpreter) as harness:
            harness.run(300)
            runs.append(
                (
                    harness.transmitted.hexdigest(),
                    harness.pulse_results,
                    harness.firmware.state,
                    harness.firmware.outputs,
                )
            )
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][1].get("REJECTED_AUTH", 0) > 0 and runs[0][1].get("REJECTED_STALE", 0) > 0
