"""The whole transaction on real parts: mTLS gRPC on loopback, pty serial, real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.custody.ledger import PurgeLedger
from appliance.custody.payload import seal_capture
from appliance.custody.transaction import CaptureTransaction
from appliance.errors import MatchingFailure, MatchingUnavailable
from appliance.pipeline.traveller import TravellerPipeline
from appliance.vision.camera import ReplaySource
from firmware_bridge.protocol import Indicator
from gate_contract.clock import now_ms
from gate_contract.errors import VerdictRejected
from gate_contract.wire import pb
from matching_service.dev_ca import create_dev_pki
from matching_service.sessions import SessionTable
from testbed.runs import wait_for
from testbed.testing import FLIGHT
from tests.support import WalkingUp, copy_layout

CANVAS = (1280, 720)


class CountingSource(ReplaySource):
    """A replay source that counts how many frames the appliance read from it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0

    def read(self):
        self.reads += 1
        return super().read()


def traveller(photo: Path, frames: int = 6) -> CountingSource:
    return CountingSource([photo], canvas=CANVAS, repeat=frames)


@pytest.fixture
def boarding(detector, client, gate_rig, tmp_path) -> TravellerPipeline:
    return TravellerPipeline(
        detector, client, gate_rig.gate, PurgeLedger(tmp_path / "ledger.jsonl")
    )


def test_booked_traveller_opens_the_relay(boarding, gate_rig, demo_photos, matcher):
    receipts_before = len(matcher.service.purge_receipts)
    result = boarding.process(traveller(demo_photos / "obama2.jpg"))
    assert result.outcome == "granted", result.reason
    assert result.frame_sent
    assert wait_for(lambda: gate_rig.simulator.relay_pulses == [3000])
    assert gate_rig.simulator.indicator == Indicator.GRANTED
    assert result.purge.buffers_zeroized == 4 and result.purge.outcome == "granted"
    assert wait_for(lambda: len(matcher.service.purge_receipts) == receipts_before + 1)
    assert boarding.ledger.verify() == 2  # the capture's intent, then its purge record


def test_traveller_not_on_flight_keeps_gate_shut(boarding, gate_rig, demo_photos):
    result = boarding.process(traveller(demo_photos / "astronaut.png"))
    assert result.outcome == "referred"
    assert result.reason == "not_on_flight"
    assert wait_for(lambda: gate_rig.simulator.indicator == Indicator.SEE_AGENT)
    assert gate_rig.simulator.relay_pulses == []
    assert not gate_rig.simulator.relay_open


def test_a_traveller_not_verified_is_captured_again_nearer_then_referred(
    boarding, gate_rig, demo_photos, matcher
):
    """Two captures of someone not on the flight, the second with the face nearer, both
    verified by the real service, both purged and in the ledger; the gate stays shut."""
    receipts_before = len(matcher.service.purge_receipts)
    source = WalkingUp(demo_photos / "astronaut.png", start=0.5, end=1.4)
    result = boarding.process(source)
    assert result.outcome == "referred" and result.reason == "not_on_flight"
    assert len(result.earlier_capture_ids) == 1 and result.frame_sent
    assert wait_for(lambda: len(matcher.service.purge_receipts) == receipts_before + 2)
    outcomes = [json.loads(line).get("outcome") for line in boarding.ledger.path.open()]
    assert [o for o in outcomes if o] == ["retaken", "referred"]
    assert boarding.ledger.verify() == 4  # two intents, two purge records
    assert wait_for(lambda: gate_rig.simulator.indicator == Indicator.SEE_AGENT)
    assert gate_rig.simulator.relay_pulses == [] and not gate_rig.simulator.relay_open
    assert all(not frame.any() for frame in source.given)


def test_opt_out_button_sends_nothing(boarding, gate_rig, demo_photos, matcher):
    receipts_before = len(matcher.service.purge_receipts)
    gate_rig.simulator.press_opt_out()
    assert wait_for(boarding.gate.opt_out_pending)
    source = traveller(demo_photos / "obama2.jpg")
    result = boarding.process(source)
    assert result.outcome == "manual_check"
    assert source.reads == 0, "no frame of an opted-out traveller may be read"
    assert not result.frame_sent
    assert len(matcher.service.purge_receipts) == receipts_before
    assert wait_for(lambda: gate_rig.simulator.indicator == Indicator.OPT_OUT_ACK)
    assert gate_rig.simulator.relay_pulses == []


def test_empty_lane_sends_nothing(boarding, gate_rig):
    blank = np.full((720, 1280, 3), 118, np.uint8)

    class Blank:
        def read(self):
            return blank.copy()

        def close(self):
            pass

    result = boarding.process(Blank())
    assert result.outcome == "no_face" and not result.frame_sent
    assert gate_rig.simulator.relay_pulses == []


def _sealed_capture(client, detector, photo: Path):
    frame = cv2.imread(str(photo))
    face = detector.detect(frame)[0]
    tx = CaptureTransaction(client.device_id)
    tx.captured_at_ms = now_ms()
    tx.track(frame)
    binding = client.binding(tx.capture_id, tx.captured_at_ms)
    sealed = seal_capture(tx, frame, face, client.sealing_key, binding)
    return tx, frame, sealed


def test_every_buffer_is_zero_after_purge(client, detector, demo_photos):
    tx, frame, sealed = _sealed_capture(client, detector, demo_photos / "obama2.jpg")
    buffers = list(tx._buffers)
    assert len(buffers) == 4 and all(np.asarray(b).any() for b in buffers)
    verdict = client.verify(tx.capture_id, tx.captured_at_ms, sealed)
    assert verdict.decision == pb.MATCH
    record = tx.purge("granted", "verdict")
    assert not frame.any() and not any(sealed)
    for buffer in buffers:
        assert not np.asarray(buffer).any()
    assert record.bytes_zeroized == sum(np.asarray(b).nbytes for b in buffers)


def test_tampered_payload_is_rejected(client, detector, demo_photos):
    tx, _, sealed = _sealed_capture(client, detector, demo_photos / "obama2.jpg")
    sealed[len(sealed) // 2] ^= 0x01
    with pytest.raises(MatchingUnavailable, match="INVALID_ARGUMENT"):
        client.verify(tx.capture_id, tx.captured_at_ms, sealed)
    tx.purge("error", "test")


def test_replayed_capture_is_rejected(client, detector, demo_photos):
    tx, _, sealed = _sealed_capture(client, detector, demo_photos / "obama2.jpg")
    copy = bytearray(sealed)
    client.verify(tx.capture_id, tx.captured_at_ms, sealed)
    with pytest.raises(MatchingUnavailable, match="ALREADY_EXISTS"):
        client.verify(tx.capture_id, tx.captured_at_ms, copy)
    tx.purge("error", "test")


def test_certificate_from_another_ca_is_refused(matcher, tmp_path):
    rogue = create_dev_pki(tmp_path / "rogue")
    mixed = copy_layout(matcher.pki, tmp_path / "mixed")
    for name in ("device_cert", "device_key"):
        getattr(mixed, name).write_bytes(getattr(rogue, name).read_bytes())
    client = matcher.client(mixed)
    client._deadline = 3.0
    with pytest.raises(MatchingUnavailable):
        client.open_session(FLIGHT)
    client.close()


def test_device_cannot_speak_for_another_device(matcher):
    client = matcher.client(device_id="gate-other-0002")
    with pytest.raises(MatchingUnavailable, match="PERMISSION_DENIED"):
        client.open_session(FLIGHT)
    client.close()


def test_verdict_signed_by_another_key_is_rejected(matcher, detector, demo_photos, tmp_path):
    mixed = copy_layout(matcher.pki, tmp_path / "mixed")
    impostor = Ed25519PrivateKey.generate().public_key()
    mixed.signing_public.write_bytes(
        impostor.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    client = matcher.client(mixed)
    client.open_session(FLIGHT)
    tx, _, sealed = _sealed_capture(client, detector, demo_photos / "obama2.jpg")
    with pytest.raises(VerdictRejected):
        client.verify(tx.capture_id, tx.captured_at_ms, sealed)
    tx.purge("error", "test")
    client.close()


def test_demo_runs_end_to_end_and_writes_no_image(tmp_path):
    env = {**os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "demo", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["travellers"] == 4
    # granted once; referred: not on the flight, and the same traveller coming back
    assert (summary["granted"], summary["referred"], summary["manual_check"]) == (1, 2, 1)
    # the traveller not on the flight is captured twice (the second time nearer)
    assert summary["frames_sent"] == summary["frames_purged"] == 4
    assert summary["image_files_written"] == 0
    assert summary["relay_pulses"] == 1
    assert summary["e2e_ms_p50"] > 0
    assert "\xff\xd8" not in result.stdout + result.stderr


def test_camera_that_delivers_nothing_refers_to_agent(boarding, gate_rig):
    class DeadCamera:
        def read(self):
            return None

        def close(self):
            pass

    result = boarding.process(DeadCamera())
    assert result.outcome == "referred" and result.reason == "camera delivered no frame"
    assert wait_for(lambda: gate_rig.simulator.indicator == Indicator.SEE_AGENT)
    assert gate_rig.simulator.relay_pulses == []


def test_opt_out_during_capture_stops_before_anything_is_sent(
    boarding, gate_rig, demo_photos, matcher
):
    receipts_before = len(matcher.service.purge_receipts)
    frames_read = []

    class PressesOptOut(CountingSource):
        """The traveller presses the button while the camera is already running."""

        def read(self):
            frame = super().read()
            if self.reads == 1:
                gate_rig.simulator.press_opt_out()
                assert wait_for(boarding.gate.opt_out_pending)
            if frame is not None:
                frames_read.append(frame)
            return frame

    result = boarding.process(PressesOptOut([demo_photos / "obama2.jpg"], canvas=CANVAS, repeat=6))
    assert result.outcome == "manual_check" and not result.frame_sent
    assert result.frames_seen == 1
    assert frames_read and all(not f.any() for f in frames_read), "read frames must be zeroized"
    assert len(matcher.service.purge_receipts) == receipts_before
    assert gate_rig.simulator.relay_pulses == []


def test_a_ledger_failure_after_a_grant_keeps_the_grant(boarding, gate_rig, demo_photos, caplog):
    """The relay already pulsed: a full disk must not turn the traveller into a referral."""

    def full_disk(record):
        raise OSError(28, "No space left on device")

    boarding.ledger.append = full_disk
    result = boarding.process(traveller(demo_photos / "obama2.jpg"))
    assert result.outcome == "granted"
    assert result.purge is not None and result.purge.bytes_zeroized > 0
    assert any("purge ledger not durable" in r.getMessage() for r in caplog.records)


def test_a_matcher_that_forgot_the_session_gets_a_new_one(client, detector, demo_photos, matcher):
    """After a matching-service restart the session is unknown: this capture is refused
    (never re-sent), and the client opens a fresh session for the next traveller."""
    old_session = client.session_id
    matcher.service.sessions = SessionTable()  # what a restart does to the service's memory
    tx, _, sealed = _sealed_capture(client, detector, demo_photos / "obama2.jpg")
    with pytest.raises(MatchingUnavailable) as refused:
        client.verify(tx.capture_id, tx.captured_at_ms, sealed)
    assert refused.value.failure is MatchingFailure.UNKNOWN_SESSION
    tx.purge("error", "test")
    assert client.session_id and client.session_id != old_session
    tx, _, sealed = _sealed_capture(client, detector, demo_photos / "obama2.jpg")
    assert client.verify(tx.capture_id, tx.captured_at_ms, sealed).decision == pb.MATCH
    tx.purge("granted", "verdict")
