"""The order of custody steps for one traveller: intent, send, refer, record, receipt.

Defect 2: a capture that left the unit had no record if the process died before the
verdict; here the intent record must be durable before the sealed frame leaves.
Defect 3: on the fault path the receipt was sent before the traveller was referred, so
against a stalled matcher the traveller waited for two deadlines; here the gate refers
first and the receipt goes from a background sender, re-sent until delivered.
"""

from __future__ import annotations

import errno
import json
import threading

import pytest

from appliance.custody.ledger import INTENT_EVENT, PurgeLedger
from appliance.custody.receipts import ReceiptQueue
from appliance.errors import MatchingFailure, MatchingUnavailable
from appliance.gate.machine import GateController, State
from appliance.matching.answers import Decision
from appliance.matching.receipt_sender import ReceiptSender
from appliance.pipeline.traveller import TravellerPipeline
from testbed.runs import wait_for
from testbed.testing import FakeLink, FakeMatcher
from tests.appliance.pipeline.test_traveller_and_workflow import KeptSource


@pytest.fixture
def gate():
    gate = GateController(FakeLink(), passage_window_s=5.0)
    gate.start()
    yield gate
    gate.close()


def entries(ledger: PurgeLedger) -> list[dict]:
    return [json.loads(line) for line in ledger.path.read_bytes().splitlines()]


class StalledReceipts(FakeMatcher):
    """Answers ``answer``; its receipts hang until ``release`` (a stalled service)."""

    def __init__(self, answer) -> None:
        super().__init__(answer)
        self.release = threading.Event()
        self.attempts = 0

    def report_purge(self, record: object) -> bool:
        self.attempts += 1
        if not self.release.wait(10):
            return False
        return super().report_purge(record)


def test_the_intent_is_durable_before_the_frame_leaves(detector, gate, tmp_path, demo_photos):
    ledger = PurgeLedger(tmp_path / "ledger.jsonl")
    seen: list[dict] = []
    client = FakeMatcher(Decision.MATCH, during=lambda: seen.extend(entries(ledger)))
    result = TravellerPipeline(detector, client, gate, ledger).process(
        KeptSource(demo_photos / "obama2.jpg")
    )
    assert result.outcome == "granted"
    assert [e.get("event") for e in seen] == [INTENT_EVENT]  # on disk while verifying
    intent = seen[0]
    assert intent["capture_id"] == result.capture_id and len(intent["sealed_sha256"]) == 64
    assert [e.get("capture_id") for e in entries(ledger)] == [result.capture_id] * 2
    assert PurgeLedger(ledger.path).closed_at_open == []  # closed by its purge record


def test_a_dead_matcher_refers_first_and_the_receipt_follows_later(
    detector, gate, tmp_path, demo_photos
):
    ledger = PurgeLedger(tmp_path / "ledger.jsonl")
    client = StalledReceipts(MatchingUnavailable("down", MatchingFailure.UNREACHABLE))
    order: list[str] = []
    gate.on_transition(lambda step: step.target is State.REFER_TO_AGENT and order.append("refer"))
    real_append = ledger.append
    ledger.append = lambda record: (order.append("record"), real_append(record))[1]
    result = TravellerPipeline(detector, client, gate, ledger).process(
        KeptSource(demo_photos / "obama2.jpg")
    )
    assert result.outcome == "referred" and gate.phase is State.REFER_TO_AGENT
    assert order == ["refer", "record"]
    assert client.receipts == []  # the traveller did not wait for the stalled receipt
    client.release.set()
    assert wait_for(lambda: len(client.receipts) == 1, timeout=10)
    assert client.receipts[0].capture_id == result.capture_id


def test_undelivered_receipts_are_kept_on_disk_and_sent_after_a_restart(tmp_path) -> None:
    from tests.appliance.custody.test_ledger import record

    path = tmp_path / "purge-receipts.jsonl"
    refused: list[str] = []
    down = ReceiptSender(
        lambda r: refused.append(r.capture_id) and False, ReceiptQueue(path), first_backoff_s=5
    )
    down.submit(record(1))
    down.submit(record(2))
    assert wait_for(lambda: refused == ["capture-0001"])
    down.close()
    assert b"capture-0002" in path.read_bytes() and b"\xff\xd8" not in path.read_bytes()
    delivered: list[str] = []
    up = ReceiptSender(lambda r: delivered.append(r.capture_id) or True, ReceiptQueue(path))
    assert up.owed == 2
    up.start()
    assert wait_for(lambda: delivered == ["capture-0001", "capture-0002"])
    assert wait_for(lambda: up.owed == 0)
    up.close()
    assert ReceiptQueue(path).oldest() is None  # nothing is sent twice after a restart


def test_a_receipt_refused_for_a_while_is_retried_until_delivered(tmp_path) -> None:
    from tests.appliance.custody.test_ledger import record

    answers = iter([False, False, True])
    calls: list[str] = []

    def report(r) -> bool:
        calls.append(r.capture_id)
        return next(answers)

    sender = ReceiptSender(report, ReceiptQueue(None), first_backoff_s=0.01)
    sender.submit(record(3))
    assert wait_for(lambda: sender.owed == 0)
    assert calls == ["capture-0003"] * 3 and sender.delivered == 1
    sender.close()


def test_no_capture_is_sent_while_the_ledger_is_not_durable(detector, gate, tmp_path, demo_photos):
    ledger = PurgeLedger(tmp_path / "ledger.jsonl")
    real = ledger._append_entry

    def full(_entry: dict) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    ledger._append_entry = full
    client = FakeMatcher(Decision.MATCH)
    pipeline = TravellerPipeline(detector, client, gate, ledger)
    result = pipeline.process(KeptSource(demo_photos / "obama2.jpg"))
    assert (result.outcome, result.reason) == ("referred", "purge ledger not durable")
    assert not client.verifying.is_set() and not ledger.durable
    assert gate.phase is State.REFER_TO_AGENT
    gate.ready("next traveller")
    again = pipeline.process(KeptSource(demo_photos / "obama2.jpg"))
    assert again.reason == "purge ledger not durable" and again.capture_id == ""  # no capture
    ledger._append_entry = real
    gate.ready("next traveller")
    assert pipeline.process(KeptSource(demo_photos / "obama2.jpg")).outcome == "granted"
    assert ledger.durable and ledger.verify() == 3  # the refused capture's record, then 2
