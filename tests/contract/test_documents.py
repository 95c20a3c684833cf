"""JSON nested too deeply to parse: every reader of a file others write takes it down its
own "unreadable" path (one clear error, or a damaged line skipped), never a
``RecursionError`` traceback. Each test fails with plain ``json.loads``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from appliance.custody.ledger import PurgeLedger
from appliance.custody.receipts import ReceiptQueue
from appliance.custody.transaction import PurgeRecord
from appliance.errors import ConfigError, LedgerError
from appliance.gate.agents import read_pin_file
from appliance.gate.boarded import BoardedTravellers, Claim
from gate_contract.documents import NestedTooDeeply, parse_json, parse_toml
from matching_service.errors import GalleryError, RevocationError
from matching_service.gallery import read_manifest
from matching_service.revocation import parse_revocations
from testbed.scene_format import SceneFormatError, parse_scene_info, read_truth

DEEP = "[" * 100_000 + "]" * 100_000


def a_record(n: int) -> PurgeRecord:
    return PurgeRecord(
        capture_id=f"capture-{n}", device_id="gate-01", sealed_sha256="ab" * 32,
        captured_at_ms=1, sent_at_ms=2, verdict_at_ms=3, purged_at_ms=4,
        outcome="granted", reason="verdict", buffers_zeroized=1, bytes_zeroized=10,
    )  # fmt: skip


def test_too_deep_is_a_value_error_and_the_rest_reads_as_json() -> None:
    with pytest.raises(RecursionError):
        json.loads(DEEP)  # what the readers used to get
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json(DEEP)
    assert parse_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    with pytest.raises(ValueError):
        parse_json("{nope")


def test_toml_too_deep_is_a_value_error_too() -> None:
    import tomllib

    with pytest.raises(RecursionError):
        tomllib.loads("a = " + DEEP)  # what the config readers used to get
    with pytest.raises(NestedTooDeeply, match="TOML nested too deeply"):
        parse_toml("a = " + DEEP)
    assert parse_toml('[device]\nid = "gate-1"') == {"device": {"id": "gate-1"}}
    with pytest.raises(tomllib.TOMLDecodeError):
        parse_toml("[device")


def test_a_scene_folder(tmp_path: Path) -> None:
    with pytest.raises(SceneFormatError, match="not JSON"):
        parse_scene_info(DEEP)
    (tmp_path / "truth.json").write_text('{"faces": ' + DEEP + "}")
    assert read_truth(tmp_path) is None  # optional: no truth, not a traceback


def test_a_ledger_record(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = PurgeLedger(path)
    for n in range(3):
        ledger.append(a_record(n))
    kept = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(kept[0] + DEEP.encode() + b"\n" + kept[2])
    with pytest.raises(LedgerError, match="record 2 is not valid JSON"):
        ledger.verify()


def test_a_receipt_queue_line(tmp_path: Path, caplog) -> None:
    path = tmp_path / "purge-receipts.jsonl"
    owed = json.dumps({"due": a_record(1).to_dict()})
    path.write_text(DEEP + "\n" + owed + "\n")
    with caplog.at_level(logging.WARNING):
        queue = ReceiptQueue(path)
    assert len(queue) == 1 and "unreadable line skipped" in caplog.text


def test_a_boarded_register_line(tmp_path: Path) -> None:
    path = tmp_path / "boarded.jsonl"
    path.write_text(DEEP + "\n" + json.dumps({"flight_key": "F1", "claim": "tok"}) + "\n")
    boarded = BoardedTravellers("F1")
    assert boarded.open("F1", path, []) == 1
    assert boarded.claim_token("tok") is Claim.ALREADY_BOARDED


def test_an_agent_pin_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.json"
    path.write_text(DEEP)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="not JSON"):
        read_pin_file(path)


def test_a_gallery_manifest_and_a_revocation_list(tmp_path: Path) -> None:
    manifest = tmp_path / "gallery.json"
    manifest.write_text(DEEP)
    with pytest.raises(GalleryError, match="nested too deeply"):
        read_manifest(manifest)
    with pytest.raises(RevocationError, match="not JSON"):
        parse_revocations(DEEP)
