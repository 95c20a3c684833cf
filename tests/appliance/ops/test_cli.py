"""`gatectl` commands that technicians run, driven as a technician would: as processes."""

from __future__ import annotations

import json

from tests.support import gatectl


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


def test_audit_verify_and_export_from_the_command_line(tmp_path):
    from appliance.custody.audit import default_key_path
    from appliance.custody.ledger import PurgeLedger
    from appliance.custody.transaction import CaptureTransaction

    path = tmp_path / "purge-ledger.jsonl"
    ledger = PurgeLedger(path, default_key_path(path))
    for _ in range(3):
        ledger.append(CaptureTransaction("gate-dev-0001").purge("granted", "verdict"))
    ok = gatectl("audit", "verify", "--ledger", str(path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "signatures verified" in ok.stdout
    exported = gatectl("audit", "export", "--ledger", str(path), "--since", "2000-01-01")
    assert exported.returncode == 0
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["record"] for r in records] == [1, 2, 3]

    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2] + lines[1])  # two records swapped
    broken = gatectl("audit", "verify", "--ledger", str(path))
    assert broken.returncode != 0
    assert "record 2" in broken.stdout + broken.stderr


def test_bench_purge_prints_its_figures():
    result = gatectl("bench", "purge", "--transactions", "20", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["transactions"] == 20 and figures["image_files_written"] == 0
    assert 0 < figures["purge_us_p50"] <= figures["purge_us_p99"]


def test_simulate_prints_a_summary_that_adds_up():
    result = gatectl("simulate", "--travellers", "6", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["travellers"] == 6
    assert (
        summary["granted"] + summary["referred"] + summary["manual_check"] + summary["other"] == 6
    )
    assert 0 <= summary["capture_rate"] <= 1


def test_agents_set_pin_list_remove(tmp_path):
    from appliance.gate.agents import Agent, PinAuthenticator

    pins = tmp_path / "agents.json"

    def agents(*args: str, pin: str = ""):
        return gatectl("agents", *args, "--file", str(pins), input=pin, timeout=60)

    assert agents("set-pin", "--agent", "A123", "--pin-stdin", pin="482913\n").returncode == 0
    weak = agents("set-pin", "--agent", "B7", "--pin-stdin", pin="1111\n")
    assert weak.returncode == 2 and "6 to 12 digits" in weak.stderr
    assert [line.split()[0] for line in agents("list").stdout.splitlines()] == ["A123"]
    assert PinAuthenticator.from_file(pins).verify("A123", "482913") == Agent("A123", "pin")
    assert "482913" not in pins.read_text()
    assert agents("remove", "--agent", "A123").returncode == 0
    assert agents("remove", "--agent", "A123").returncode == 1
