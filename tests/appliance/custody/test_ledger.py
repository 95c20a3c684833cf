"""Unit and property tests for appliance.custody.ledger (hash-chained purge ledger)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.custody.ledger import GENESIS, PurgeLedger
from appliance.custody.transaction import PurgeRecord
from appliance.errors import LedgerError
from testbed.write_audit import contains_image_data


def record(n: int, reason: str = "verdict", outcome: str = "granted") -> PurgeRecord:
    return PurgeRecord(
        capture_id=f"capture-{n:04d}",
        device_id="gate-b42-01",
        sealed_sha256=hashlib.sha256(f"sealed {n}".encode()).hexdigest(),
        captured_at_ms=1_795_000_000_000 + n * 1000,
        sent_at_ms=1_795_000_000_100 + n * 1000,
        verdict_at_ms=1_795_000_000_300 + n * 1000,
        purged_at_ms=1_795_000_000_301 + n * 1000,
        outcome=outcome,
        reason=reason,
        buffers_zeroized=3,
        bytes_zeroized=2_764_800 + n,
    )


def fill(path: Path, n: int) -> PurgeLedger:
    ledger = PurgeLedger(path)
    for i in range(n):
        ledger.append(record(i))
    return ledger


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_empty_ledger_verifies_to_zero(tmp_path: Path) -> None:
    ledger = PurgeLedger(tmp_path / "sub" / "ledger.jsonl")
    assert (tmp_path / "sub").is_dir()
    assert ledger.verify() == 0


@pytest.mark.parametrize("n", [1, 2, 7])
def test_append_n_records_verifies_n(tmp_path: Path, n: int) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, n)
    assert ledger.verify() == n
    assert len(lines(path)) == n


def test_records_are_chained_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    fill(path, 3)
    raw = lines(path)
    entries = [json.loads(line) for line in raw]
    assert entries[0]["prev"] == GENESIS
    for before, after in zip(raw, entries[1:], strict=False):
        assert after["prev"] == hashlib.sha256(before.rstrip(b"\n")).hexdigest()
    assert entries[2]["capture_id"] == "capture-0002"
    assert {k for k in entries[0] if k != "prev"} == set(record(0).to_dict())


def test_ledger_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    fill(path, 1)
    assert path.stat().st_mode & 0o077 == 0


def test_reopened_ledger_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    fill(path, 3)
    reopened = PurgeLedger(path)
    reopened.append(record(3))
    reopened.append(record(4))
    assert reopened.verify() == 5
    assert PurgeLedger(path).verify() == 5
    entries = [json.loads(line) for line in lines(path)]
    assert entries[3]["prev"] == hashlib.sha256(lines(path)[2].rstrip(b"\n")).hexdigest()


def _tamper(path: Path, index: int, position: int) -> None:
    raw = lines(path)
    line = bytearray(raw[index])
    line[position] = ord("X") if line[position] != ord("X") else ord("Y")
    raw[index] = bytes(line)
    path.write_bytes(b"".join(raw))


@pytest.mark.parametrize("target", [0, 2, 3])
def test_tampered_value_breaks_chain_at_next_record(tmp_path: Path, target: int) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, 5)
    line = lines(path)[target]
    position = line.index(b"capture-") + len(b"capture-")  # a digit of the capture id
    _tamper(path, target, position)
    with pytest.raises(
        LedgerError, match=rf"record {target + 2} does not follow record {target + 1}"
    ):
        ledger.verify()


def test_tampered_structure_names_the_broken_record(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, 4)
    _tamper(path, 1, 0)  # the opening brace of record 2
    with pytest.raises(LedgerError, match=r"record 2 is not valid JSON"):
        ledger.verify()


def test_tampered_prev_names_the_record(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, 4)
    line = lines(path)[2]
    _tamper(path, 2, line.index(b'"prev":"') + len(b'"prev":"'))
    with pytest.raises(LedgerError, match=r"record 3 does not follow record 2"):
        ledger.verify()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_single_byte_tamper_before_the_tail_is_detected(
    tmp_path: Path, data: st.DataObject
) -> None:
    path = tmp_path / "ledger-prop.jsonl"
    path.unlink(missing_ok=True)
    ledger = fill(path, 4)
    raw = lines(path)
    index = data.draw(st.integers(0, len(raw) - 2), label="record")  # not the last one
    position = data.draw(st.integers(0, len(raw[index]) - 2), label="byte")  # not the newline
    value = data.draw(st.integers(0x20, 0x7E).filter(lambda b: b != raw[index][position]))
    line = bytearray(raw[index])
    line[position] = value
    raw[index] = bytes(line)
    path.write_bytes(b"".join(raw))
    with pytest.raises(LedgerError, match=rf"record ({index + 1}|{index + 2}) "):
        ledger.verify()


@pytest.mark.parametrize("deleted", [0, 1, 3])
def test_deleted_record_breaks_chain(tmp_path: Path, deleted: int) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, 5)
    raw = lines(path)
    del raw[deleted]
    path.write_bytes(b"".join(raw))
    with pytest.raises(LedgerError, match=rf"record {deleted + 1} does not follow"):
        ledger.verify()


@pytest.mark.parametrize(("a", "b"), [(0, 1), (1, 3), (3, 4)])
def test_swapped_records_break_chain(tmp_path: Path, a: int, b: int) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, 5)
    raw = lines(path)
    raw[a], raw[b] = raw[b], raw[a]
    path.write_bytes(b"".join(raw))
    with pytest.raises(LedgerError, match=rf"record {a + 1} does not follow"):
        ledger.verify()


def test_deleted_last_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, 5)
    raw = lines(path)
    path.write_bytes(b"".join(raw[:-1]))
    with pytest.raises(LedgerError):
        ledger.verify()


def test_tampered_last_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, 3)
    raw = lines(path)
    raw[-1] = raw[-1].replace(b'"outcome":"granted"', b'"outcome":"referred"')
    path.write_bytes(b"".join(raw))
    assert b'"outcome":"referred"' in path.read_bytes()
    with pytest.raises(LedgerError):
        ledger.verify()


def test_ledger_lines_hold_no_image_data(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = fill(path, 300)
    ledger.append(record(300, reason="exception: \xff\xd8\xff JPEG-like \x89PNG\r\n\x1a\n"))
    content = path.read_bytes()
    assert not contains_image_data(content)
    for line in lines(path):
        assert not contains_image_data(line)
        assert set(line.rstrip(b"\n")) <= set(range(0x20, 0x7F))  # printable ASCII JSON


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(reason=st.text(max_size=200), outcome=st.text(max_size=20))
def test_any_record_text_gives_ascii_json_without_image_data(
    tmp_path: Path, reason: str, outcome: str
) -> None:
    path = tmp_path / "ledger-text.jsonl"
    path.unlink(missing_ok=True)
    ledger = PurgeLedger(path)
    ledger.append(record(0, reason=reason, outcome=outcome))
    ledger.append(record(1))
    line = lines(path)[0]
    assert not contains_image_data(line)
    assert json.loads(line)["reason"] == reason
    assert ledger.verify() == 2
