"""`gatectl` commands that technicians run, driven as a technician would: as processes."""

from __future__ import annotations

import json
import subprocess
import sys


def gatectl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_serial_test_against_the_simulator_passes_without_pulsing():
    result = gatectl("serial", "test", "--simulate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout
    assert "[SKIP] relay pulse" in result.stdout


def test_serial_test_on_a_missing_port_fails_cleanly(tmp_path):
    key = tmp_path / "relay.key"
    key.write_text("00" * 32)
    result = gatectl("serial", "test", "--port", str(tmp_path / "ttyNONE"), "--key-file", str(key))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "FAIL" in result.stdout


def test_bench_serial_prints_its_figures():
    result = gatectl("bench", "serial", "--rounds", "20", "--fuzz-frames", "300", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["relay_opened_by_fuzz"] == 0
    assert figures["frames_fuzzed"] == 300 and figures["rounds"] == 20
    assert figures["rtt_ms_p50"] > 0 and figures["rtt_ms_p99"] >= figures["rtt_ms_p50"]
