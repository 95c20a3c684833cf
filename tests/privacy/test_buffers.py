"""Proof: after every kind of transaction end, every buffer that held the capture is zero.

The test keeps its own references to every frame the camera handed over and to every
buffer the transaction was given (crop, JPEG, sealed payload), runs one traveller to
an end (verdict granted, not on the flight, not on the flight twice with a second
look, matcher down, opt-out before or during the capture, an exception in sealing or
in the detector, KeyboardInterrupt, a shutdown request, and a real SIGTERM delivered to
a subprocess mid-transaction) and then checks that each of those buffers holds only
zeros and that a purge record was written.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.custody.audit import default_key_path
from appliance.custody.ledger import PurgeLedger
from appliance.custody.transaction import CaptureTransaction
from appliance.gate.machine import State
from appliance.matching.client import MatchingClient
from appliance.pipeline import traveller as boarding_module
from appliance.pipeline.traveller import TravellerPipeline
from appliance.shutdown import ShutdownRequested
from appliance.vision.camera import ReplaySource
from matching_service.dev_ca import DEV_DEVICE_ID
from testbed.runs import wait_for
from tests.support import REPO, WalkingUp

CANVAS = (1280, 720)


class KeptSource(ReplaySource):
    """A replay camera that keeps a reference to every frame it hands over."""

    def __init__(self, photo: Path, frames: int = 6, on_read=None) -> None:
        super().__init__([photo], canvas=CANVAS, repeat=frames)
        self.frames: list[np.ndarray] = []
        self.on_read = on_read

    def read(self):
        frame = super().read()
        if frame is not None:
            self.frames.append(frame)
            if self.on_read:
                self.on_read(len(self.frames))
        return frame


@pytest.fixture
def kept(monkeypatch) -> list:
    """Every buffer any transaction is given, as the test's own reference."""
    buffers: list = []
    real_track = CaptureTransaction.track

    def track(self, buffer):
        buffers.append(buffer)
        return real_track(self, buffer)

    monkeypatch.setattr(CaptureTransaction, "track", track)
    return buffers


@pytest.fixture
def ledger(tmp_path: Path) -> PurgeLedger:
    path = tmp_path / "ledger" / "purge-ledger.jsonl"
    return PurgeLedger(path, default_key_path(path))


@pytest.fixture
def gate(detector, client, gate_rig, ledger) -> TravellerPipeline:
    return TravellerPipeline(detector, client, gate_rig.gate, ledger)


def assert_all_zero(buffers: list, *, expect_some: bool = True) -> None:
    if expect_some:
        assert buffers, "the test kept no buffer: nothing was proven"
        assert sum(np.asarray(b).nbytes for b in buffers) > 0
    for number, buffer in enumerate(buffers):
        array = np.asarray(buffer)
        assert not array.any(), f"buffer {number} ({type(buffer).__name__}, {array.nbytes} B)"


def last_entry(ledger: PurgeLedger) -> dict:
    assert ledger.verify() >= 1
    return json.loads(ledger.path.read_bytes().splitlines()[-1])


def test_granted(gate, kept, ledger, demo_photos):
    source = KeptSource(demo_photos / "obama2.jpg")
    result = gate.process(source)
    assert result.outcome == "granted", result.reason
    assert len(kept) == 4  # frame, crop, JPEG, sealed payload
    assert_all_zero(kept + source.frames)
    entry = last_entry(ledger)
    assert (entry["outcome"], entry["reason"]) == ("granted", "verdict")
    assert entry["bytes_zeroized"] == sum(np.asarray(b).nbytes for b in kept)


def test_not_on_flight(gate, kept, ledger, demo_photos):
    source = KeptSource(demo_photos / "astronaut.png")
    result = gate.process(source)
    assert (result.outcome, result.reason) == ("referred", "not_on_flight")
    assert_all_zero(kept + source.frames)
    records = [json.loads(line) for line in ledger.path.read_bytes().splitlines()]
    sent = next(r for r in records if r["capture_id"] == result.capture_id and "outcome" in r)
    # the capture was not verified: it ended as "retaken"; the still photo gave no bigger
    # face, so the second look ended with the camera, and was purged and recorded too
    assert (sent["outcome"], sent["reason"]) == ("retaken", "verdict")
    assert last_entry(ledger)["reason"] == "second look: source_ended"


def test_a_second_look_that_is_sent_too(gate, kept, ledger, demo_photos):
    """Not on the flight, walking up: two captures sent, each with its own buffers, and
    every buffer of both transactions is zero at the end."""
    source = WalkingUp(demo_photos / "astronaut.png", start=0.5, end=1.4)
    result = gate.process(source)
    assert (result.outcome, result.reason) == ("referred", "not_on_flight")
    assert len(result.earlier_capture_ids) == 1 and result.frame_sent
    assert len(kept) == 8  # frame, crop, JPEG and sealed payload of each capture
    assert_all_zero(kept + source.given)
    records = [json.loads(line) for line in ledger.path.read_bytes().splitlines()]
    ended = [r for r in records if "outcome" in r]
    assert [r["outcome"] for r in ended] == ["retaken", "referred"]
    assert [r["capture_id"] for r in ended] == [*result.earlier_capture_ids, result.capture_id]
    assert sum(r["bytes_zeroized"] for r in ended) == sum(np.asarray(b).nbytes for b in kept)


def test_matcher_stopped(detector, gate_rig, matcher, ledger, kept, demo_photos):
    with socket.socket() as probe:  # a port nobody listens on: the service is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = MatchingClient(f"localhost:{port}", matcher.pki, DEV_DEVICE_ID, deadline_s=2.0)
    try:
        source = KeptSource(demo_photos / "obama2.jpg")
        result = TravellerPipeline(detector, down, gate_rig.gate, ledger).process(source)
    finally:
        down.close()
    assert result.outcome == "referred" and "UNAVAILABLE" in result.reason
    assert_all_zero(kept + source.frames)
    assert last_entry(ledger)["reason"].startswith("error: verify failed")


def test_opt_out_before_capture(gate, gate_rig, kept, ledger, demo_photos):
    gate_rig.simulator.press_opt_out()
    assert wait_for(gate.gate.opt_out_pending)
    source = KeptSource(demo_photos / "obama2.jpg")
    result = gate.process(source)
    assert result.outcome == "manual_check"
    assert source.frames == [] and kept == []  # nothing was read, nothing to purge


def test_opt_out_mid_capture(gate, gate_rig, kept, ledger, demo_photos, matcher):
    receipts = len(matcher.service.purge_receipts)

    def press(reads: int) -> None:
        if reads == 1:
            gate_rig.simulator.press_opt_out()
            assert wait_for(gate.gate.opt_out_pending)

    source = KeptSource(demo_photos / "obama2.jpg", on_read=press)
    result = gate.process(source)
    assert result.outcome == "manual_check" and not result.frame_sent
    assert_all_zero(kept + source.frames)
    assert last_entry(ledger)["reason"] == "opt_out"
    assert len(matcher.service.purge_receipts) == receipts


def test_exception_in_sealing(gate, kept, ledger, demo_photos, monkeypatch):
    real_seal = boarding_module.seal_capture

    def seal_then_fail(tx, frame, face, key, binding, **options):
        real_seal(tx, frame, face, key, binding, **options)  # crop, JPEG and ciphertext exist now
        raise RuntimeError("injected fault after sealing")

    monkeypatch.setattr(boarding_module, "seal_capture", seal_then_fail)
    source = KeptSource(demo_photos / "obama2.jpg")
    result = gate.process(source)
    assert (result.outcome, result.reason) == ("referred", "internal error")
    assert len(kept) == 4
    assert_all_zero(kept + source.frames)
    assert last_entry(ledger)["reason"] == "internal error: RuntimeError"


def test_exception_in_the_detector_with_a_frame_in_hand(
    client, gate_rig, ledger, kept, demo_photos
):
    class BrokenDetector:
        def detect(self, frame):
            raise MemoryError("injected: detector ran out of memory")

    source = KeptSource(demo_photos / "obama2.jpg")
    result = TravellerPipeline(BrokenDetector(), client, gate_rig.gate, ledger).process(source)
    assert result.outcome == "referred"
    assert len(source.frames) == 1 and kept == []  # the frame was never tracked...
    assert_all_zero(source.frames)  # ...but the transaction held it, and zeroized it
    assert last_entry(ledger)["reason"] == "internal error: MemoryError"


@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        (KeyboardInterrupt, "interrupted: KeyboardInterrupt"),
        (ShutdownRequested, "shutdown"),
        (SystemExit, "interrupted: SystemExit"),
    ],
)
def test_interrupted_while_waiting_for_the_verdict(
    gate, gate_rig, kept, ledger, demo_photos, monkeypatch, raised, reason
):
    def verify(*args, **kwargs):
        raise raised()

    monkeypatch.setattr(gate.client, "verify", verify)
    source = KeptSource(demo_photos / "obama2.jpg")
    with pytest.raises(raised):
        gate.process(source)
    assert len(kept) == 4
    assert_all_zero(kept + source.frames)
    entry = last_entry(ledger)
    assert (entry["outcome"], entry["reason"]) == ("referred", reason)
    assert gate_rig.gate.phase is State.REFER_TO_AGENT


SIGTERM_SCRIPT = r"""
import json, sys, time
from pathlib import Path

import numpy as np

from appliance.custody.ledger import PurgeLedger
from appliance.custody.transaction import CaptureTransaction
from appliance.gate.machine import GateController, State
from appliance.pipeline.traveller import TravellerPipeline
from appliance.shutdown import ShutdownRequested, install_shutdown_handler
from appliance.vision.camera import ReplaySource
from appliance.vision.detectors.onnx_runtime import OnnxFaceDetector
from testbed.testing import FakeLink, FakeMatcher

mode, photo, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
kept = []
real_track = CaptureTransaction.track


def track(self, buffer):
    kept.append(buffer)
    return real_track(self, buffer)


CaptureTransaction.track = track


def wait_for_sigterm(where):
    print("WAITING " + where, flush=True)
    time.sleep(60)
    print(json.dumps({"outcome": "no signal"}), flush=True)
    sys.exit(3)


class Camera(ReplaySource):
    def read(self):
        frame = super().read()
        if frame is not None:
            kept.append(frame)
        return frame


class Detector:
    def __init__(self):
        self.inner = OnnxFaceDetector("full")

    def detect(self, frame):
        if mode == "capture":
            wait_for_sigterm("capture")
        return self.inner.detect(frame)


class Client(FakeMatcher):
    def verify(self, *args, **kwargs):
        wait_for_sigterm("verify")

    def report_purge(self, record):
        return False


machine = GateController(FakeLink())
machine.start()
referred = []
machine.on_transition(lambda step: step.target is State.REFER_TO_AGENT and referred.append(1))
install_shutdown_handler()
ledger = PurgeLedger(work / "purge-ledger.jsonl", work / "ledger-signing.key")
gate = TravellerPipeline(Detector(), Client(), machine, ledger)
try:
    gate.process(Camera([photo], canvas=(1280, 720), repeat=5))
    outcome = "returned"
except ShutdownRequested as exc:
    outcome = "shutdown by " + str(exc)
lines = (work / "purge-ledger.jsonl").read_bytes().splitlines()
kept = list({id(b): b for b in kept}.values())
print(json.dumps({
    "outcome": outcome,
    "kept": len(kept),
    "kept_bytes": sum(np.asarray(b).nbytes for b in kept),
    "nonzero": [i for i, b in enumerate(kept) if np.asarray(b).any()],
    "reasons": [json.loads(line).get("reason", "") for line in lines],
    "ledger_records": ledger.verify(),
    "referred": len(referred),
}), flush=True)
"""


# capture: the one frame in hand; verify: the two frames of the steady pair (one sent),
# the crop, the JPEG and the sealed payload. A capture sent has its intent record first.
@pytest.mark.parametrize(
    ("where", "buffers", "reasons"),
    [("capture", 1, ["shutdown"]), ("verify", 5, ["", "shutdown"])],
)
def test_sigterm_mid_transaction_in_a_subprocess(tmp_path, demo_photos, where, buffers, reasons):
    process = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT, where, str(demo_photos / "obama2.jpg"), tmp_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == f"WAITING {where}", line + process.stderr.read()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["outcome"] == "shutdown by shutdown requested by SIGTERM"
    assert report["kept"] == buffers and report["kept_bytes"] >= 1280 * 720 * 3
    assert report["nonzero"] == [], f"buffers left with data after SIGTERM: {report}"
    assert report["reasons"] == reasons and report["ledger_records"] == len(reasons)
    assert report["referred"] == 1
