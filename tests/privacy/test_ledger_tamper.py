"""Proof: the signed purge ledger and `gatectl audit verify` catch every edit and name it.

Tampering with one byte, deleting a record, reordering two, forging a record without
the device key, cutting the tail or losing a segment makes ``audit_verify`` return
non-zero and print the record's number (and its capture id); a torn newest record is
reported as torn while the records before it still verify.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.custody.audit import audit_export, audit_verify, default_key_path
from appliance.custody.ledger import (
    TORN_EVENT,
    PurgeLedger,
    ledger_public_key_path,
    list_segments,
    load_or_create_ledger_key,
    segment_path,
)
from appliance.custody.transaction import PurgeRecord
from appliance.errors import LedgerError, TornRecordError
from testbed.write_audit import contains_image_data

BASE_MS = 1_795_000_000_000


def record(n: int) -> PurgeRecord:
    return PurgeRecord(
        capture_id=f"cap-{n:04d}",
        device_id="gate-b42-01",
        sealed_sha256=hashlib.sha256(f"sealed {n}".encode()).hexdigest(),
        captured_at_ms=BASE_MS + n * 60_000,
        sent_at_ms=BASE_MS + n * 60_000 + 40,
        verdict_at_ms=BASE_MS + n * 60_000 + 180,
        purged_at_ms=BASE_MS + n * 60_000 + 181,
        outcome="granted",
        reason="verdict",
        buffers_zeroized=4,
        bytes_zeroized=4_481_637,
    )


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return default_key_path(tmp_path / "ledger" / "purge-ledger.jsonl")


def signed_ledger(key_path: Path, n: int, **kwargs) -> PurgeLedger:
    ledger = PurgeLedger(key_path.parent / "purge-ledger.jsonl", key_path, **kwargs)
    for i in range(n):
        ledger.append(record(i))
    return ledger


def run_verify(path: Path, public: Path | None = None) -> tuple[int, str]:
    lines: list[str] = []
    code = audit_verify(path, public, out=lines.append)
    return code, "\n".join(lines)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --- intact ledgers ---------------------------------------------------------------------


def test_signed_ledger_verifies_and_says_so(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 5)
    assert ledger.signed and ledger.verify() == 5
    code, output = run_verify(ledger.path, ledger_public_key_path(key_path))
    assert code == 0, output
    assert "5 records in 1 segment(s), chain intact, signatures verified" in output
    entries = [json.loads(line) for line in lines_of(ledger.path)]
    assert all(re.fullmatch(r"[0-9a-f]{128}", e["sig"]) for e in entries)


def test_key_file_is_private_and_reused(key_path: Path) -> None:
    first = load_or_create_ledger_key(key_path)
    assert key_path.stat().st_mode & 0o077 == 0
    again = load_or_create_ledger_key(key_path)
    assert first.public_key() == again.public_key()
    assert ledger_public_key_path(key_path).exists()


def test_default_public_key_next_to_the_ledger_is_used(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 2)
    code, output = run_verify(ledger.path)  # no key given: ledger-signing.pub is found
    assert code == 0 and "signatures verified" in output


def test_unsigned_ledger_verifies_as_a_chain_but_not_against_a_key(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    ledger = PurgeLedger(path)
    ledger.append(record(0))
    ledger.append(record(1))
    code, output = run_verify(path)
    assert code == 0 and "signatures not checked" in output
    key = tmp_path / "k.key"
    load_or_create_ledger_key(key)
    code, output = run_verify(path, ledger_public_key_path(key))
    assert code == 1
    assert "record 1 is not signed" in output and "ledger head is not signed" in output


def test_missing_ledger_and_bad_key_fail(tmp_path: Path, key_path: Path) -> None:
    assert run_verify(tmp_path / "nothing.jsonl")[0] == 1
    ledger = signed_ledger(key_path, 1)
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    assert run_verify(ledger.path, junk)[0] == 2


def test_verify_with_another_devices_key_fails_every_record(key_path: Path, tmp_path) -> None:
    ledger = signed_ledger(key_path, 3)
    other = tmp_path / "other.key"
    load_or_create_ledger_key(other)
    code, output = run_verify(ledger.path, ledger_public_key_path(other))
    assert code == 1
    for n in (1, 2, 3):
        assert f"record {n} has a bad signature (capture cap-{n - 1:04d}" in output


# --- tampering (the proofs) -----------------------------------------------------------------


def test_one_byte_tamper_names_the_record(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 6)
    raw = lines_of(ledger.path)
    line = bytearray(raw[2])
    at = line.index(b'"bytes_zeroized":') + len(b'"bytes_zeroized":')
    line[at] = ord("9") if line[at] != ord("9") else ord("8")  # a plausible value, valid JSON
    raw[2] = bytes(line)
    ledger.path.write_bytes(b"".join(raw))
    code, output = run_verify(ledger.path)
    assert code == 1
    assert "BROKEN: record 3 has a bad signature (capture cap-0002, purge-ledger.jsonl line 3)" in (
        output
    )
    assert "record 4 does not follow record 3 (capture cap-0003" in output
    with pytest.raises(LedgerError, match="record 3 has a bad signature"):
        ledger.verify()


def test_deleted_record_is_named(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 6)
    raw = lines_of(ledger.path)
    del raw[3]
    ledger.path.write_bytes(b"".join(raw))
    code, output = run_verify(ledger.path)
    assert code == 1
    assert "BROKEN: record 4 does not follow record 3 (capture cap-0004" in output
    assert "ledger holds 5 records but its head says 6" in output


def test_reordered_records_are_named(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 6)
    raw = lines_of(ledger.path)
    raw[1], raw[4] = raw[4], raw[1]
    ledger.path.write_bytes(b"".join(raw))
    code, output = run_verify(ledger.path)
    assert code == 1
    assert "BROKEN: record 2 does not follow record 1 (capture cap-0004" in output


def test_deleted_newest_record_is_caught_by_the_head(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 4)
    ledger.path.write_bytes(b"".join(lines_of(ledger.path)[:-1]))
    code, output = run_verify(ledger.path)
    assert code == 1 and "head says 4" in output and "record 4 onwards deleted" in output


def test_forged_record_appended_without_the_key_is_named(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 3)
    forger = PurgeLedger(ledger.path, Ed25519PrivateKey.generate())  # chain right, key wrong
    forger.append(record(99))
    code, output = run_verify(ledger.path, ledger_public_key_path(key_path))
    assert code == 1
    assert "record 4 has a bad signature (capture cap-0099" in output
    assert "ledger head has a bad signature" in output


def test_rewritten_chain_without_the_key_is_caught(key_path: Path) -> None:
    """Edit a record and recompute every later prev hash: the signatures still fail."""
    ledger = signed_ledger(key_path, 4)
    entries = [json.loads(line) for line in lines_of(ledger.path)]
    entries[1]["outcome"] = "referred"
    prev = entries[0]["prev"]
    out = []
    for entry in entries:
        entry["prev"] = prev
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        prev = hashlib.sha256(line).hexdigest()
        out.append(line + b"\n")
    ledger.path.write_bytes(b"".join(out))
    code, output = run_verify(ledger.path)
    assert code == 1 and "record 2 has a bad signature (capture cap-0001" in output


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_byte_change_fails_verify(tmp_path: Path, data: st.DataObject) -> None:
    folder = tmp_path / uuid.uuid4().hex
    ledger = signed_ledger(default_key_path(folder / "purge-ledger.jsonl"), 4)
    raw = bytearray(ledger.path.read_bytes())
    position = data.draw(st.integers(0, len(raw) - 1), label="byte")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != raw[position]), label="value")
    raw[position] = value
    ledger.path.write_bytes(bytes(raw))
    code, output = run_verify(ledger.path)
    assert code != 0
    assert re.search(r"record \d+", output), output


# --- power loss -----------------------------------------------------------------------------


def _power_cut(key_path: Path, keep: int, n: int = 5) -> PurgeLedger:
    """A ledger of ``n`` records whose next append lost power after ``keep`` bytes."""
    ledger = signed_ledger(key_path, n)
    head_before = ledger.head_path.read_bytes()
    size = ledger.path.stat().st_size
    ledger.append(record(n))
    data = ledger.path.read_bytes()
    ledger.path.write_bytes(data[: size + keep])
    ledger.head_path.write_bytes(head_before)  # the head is replaced only after the line
    return ledger


def test_torn_record_after_power_loss(key_path: Path) -> None:
    ledger = _power_cut(key_path, keep=80)
    with pytest.raises(TornRecordError, match="record 6 is torn") as caught:
        ledger.verify()
    assert caught.value.verified == 5
    code, output = run_verify(ledger.path)
    assert code == 1
    assert "TORN: record 6 is torn (purge-ledger.jsonl, 80 bytes" in output
    assert "BROKEN" not in output  # the five records before it verify


def test_reopening_after_power_loss_discards_the_torn_bytes_on_the_record(
    key_path: Path,
) -> None:
    ledger = _power_cut(key_path, keep=80)
    torn = lines_of(ledger.path)[-1]
    reopened = PurgeLedger(ledger.path, key_path)
    assert reopened.recovered and "80 bytes" in reopened.recovered
    reopened.append(record(6))
    assert reopened.verify() == 7
    entries = [json.loads(line) for line in lines_of(ledger.path)]
    assert entries[5]["event"] == TORN_EVENT
    assert entries[5]["torn_sha256"] == hashlib.sha256(torn).hexdigest()
    code, output = run_verify(ledger.path)
    assert code == 0, output
    assert "note: record 6 notes a torn record discarded" in output


def test_complete_line_the_head_did_not_count_yet_is_accepted(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 3)
    head_before = ledger.head_path.read_bytes()
    ledger.append(record(3))
    ledger.head_path.write_bytes(head_before)  # power lost between line and head
    code, output = run_verify(ledger.path)
    assert code == 0, output
    assert "not counted by the head yet" in output
    reopened = PurgeLedger(ledger.path, key_path)
    reopened.append(record(4))
    code, output = run_verify(ledger.path)
    assert code == 0 and "5 records" in output and "note" not in output


# --- rotation -------------------------------------------------------------------------------


def test_rotation_by_size_keeps_one_chain(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 12, max_segment_bytes=2000)
    segments = list_segments(ledger.path)
    assert len(segments) >= 4
    assert [n for n, _ in segments] == list(range(1, len(segments) + 1))
    assert all(p.stat().st_size <= 2000 for _, p in segments)
    assert segments[1][1].name == "purge-ledger.000002.jsonl"
    assert ledger.verify() == 12
    reopened = PurgeLedger(ledger.path, key_path, max_segment_bytes=2000)
    reopened.append(record(12))
    assert reopened.verify() == 13
    code, output = run_verify(ledger.path)
    assert code == 0 and f"13 records in {len(list_segments(ledger.path))} segment(s)" in output
    first_of_second = json.loads(lines_of(segments[1][1])[0])
    last_of_first = lines_of(segments[0][1])[-1].rstrip(b"\n")
    assert first_of_second["prev"] == hashlib.sha256(last_of_first).hexdigest()


def test_deleted_segment_is_named(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 12, max_segment_bytes=2000)
    segment_path(ledger.path, 2).unlink()
    code, output = run_verify(ledger.path)
    assert code == 1
    assert "segment 2 is missing" in output
    assert re.search(r"record \d+ does not follow record \d+ \(capture cap-", output)


def test_tamper_in_an_older_segment_is_named(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 12, max_segment_bytes=2000)
    second = segment_path(ledger.path, 2)
    raw = lines_of(second)
    raw[0], raw[1] = raw[1], raw[0]
    second.write_bytes(b"".join(raw))
    first_count = len(lines_of(ledger.path))
    code, output = run_verify(ledger.path)
    assert code == 1
    assert (
        f"record {first_count + 1} does not follow record {first_count} "
        f"(capture cap-{first_count + 1:04d}, purge-ledger.000002.jsonl line 1)"
    ) in output


# --- export ---------------------------------------------------------------------------------


def test_export_writes_json_lines_in_the_window(key_path: Path) -> None:
    ledger = signed_ledger(key_path, 10, max_segment_bytes=3000)
    since = dt.datetime.fromtimestamp((BASE_MS + 3 * 60_000) / 1000, dt.UTC)
    until = dt.datetime.fromtimestamp((BASE_MS + 7 * 60_000) / 1000, dt.UTC)
    out = io.StringIO()
    assert audit_export(ledger.path, since, until, out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["capture_id"] for r in rows] == [f"cap-{n:04d}" for n in (3, 4, 5, 6)]
    assert [r["record"] for r in rows] == [4, 5, 6, 7]
    assert rows[0]["purged_at"].startswith("2026-")
    assert {"prev", "sig", "sealed_sha256", "outcome", "reason", "segment"} <= set(rows[0])
    assert not contains_image_data(out.getvalue().encode())
    everything = io.StringIO()
    assert audit_export(ledger.path, None, None, everything) == 0
    assert len(everything.getvalue().splitlines()) == 10


def test_export_of_a_broken_ledger_returns_non_zero(key_path: Path, capsys) -> None:
    ledger = signed_ledger(key_path, 4)
    raw = lines_of(ledger.path)
    del raw[1]
    ledger.path.write_bytes(b"".join(raw))
    out = io.StringIO()
    assert audit_export(ledger.path, None, None, out) == 1
    assert len(out.getvalue().splitlines()) == 3
    assert "record 2 does not follow record 1" in capsys.readouterr().err
