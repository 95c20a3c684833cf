"""The workflow on real parts: firmware simulator over a pty, reference matcher over mTLS."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from appliance.custody.ledger import PurgeLedger
from appliance.custody.transaction import CaptureTransaction
from appliance.gate.boarding_log import BoardingLog
from appliance.gate.machine import Event, GateController, State
from appliance.gate.scanner import ScanParser
from appliance.gate.workflow import GateWorkflow, Mode
from appliance.matching.client import MatchingClient
from appliance.pipeline.traveller import TravellerPipeline
from appliance.vision.camera import ReplaySource
from firmware_bridge.host import GateLink
from firmware_bridge.protocol import Indicator
from firmware_bridge.simulator import Simulator
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.gallery import Gallery, flight_key
from matching_service.server import service_from_pki, start_server
from testbed.runs import wait_for
from testbed.testing import FLIGHT, Person, TestAgent, bcbp

CANVAS = (1280, 720)
OBAMA = Person("obama", "OBAMA/BARACK", "ABC123", Path("obama.jpg"), (), True)
BIDEN = Person("biden", "BIDEN/JOSEPH", "XYZ789", Path("biden.jpg"), (), True)


class KeptSource(ReplaySource):
    def __init__(self, photo: Path, frames: int = 6) -> None:
        super().__init__([photo], canvas=CANVAS, repeat=frames)
        self.frames: list[np.ndarray] = []

    def read(self):
        frame = super().read()
        if frame is not None:
            self.frames.append(frame)
        return frame


@pytest.fixture
def rig(tmp_path):
    """Simulator on a pty and a gate machine with a short passage window."""
    key = os.urandom(32)
    simulator = Simulator(key).start()
    link = GateLink(simulator.port, key).open()
    gate = GateController(link, passage_window_s=0.5)
    gate.start()
    yield simulator, link, gate
    gate.close()
    link.close()
    simulator.stop()


AGENT = TestAgent("A1")


def make_workflow(detector, client, gate, tmp_path, mode=Mode.BIOMETRIC_FIRST):
    boarding = TravellerPipeline(
        detector, client, gate, PurgeLedger(tmp_path / "ledger.jsonl"), verdict_timeout_s=8.0
    )
    log = BoardingLog(tmp_path / "boarding-log.jsonl")
    scanner = ScanParser(reference_date=dt.date(2026, 11, 25), agents=AGENT.registry())
    return GateWorkflow(boarding, FLIGHT, mode=mode, boarding_log=log, scanner=scanner)


def test_grant_ends_when_the_door_opens_and_closes(rig, detector, client, demo_photos, tmp_path):
    simulator, _, gate = rig
    wf = make_workflow(detector, client, gate, tmp_path)
    result = wf.board(KeptSource(demo_photos / "obama2.jpg"))
    assert result.outcome == "granted", result.reason
    assert wait_for(lambda: simulator.relay_open)
    assert simulator.indicator == Indicator.GRANTED
    simulator.set_door(True)
    simulator.set_door(False)
    assert wf.wait_idle(5)
    assert gate.phase is State.READY
    assert wait_for(lambda: simulator.indicator == Indicator.READY)
    assert wait_for(lambda: not simulator.relay_open)
    record = json.loads((tmp_path / "boarding-log.jsonl").read_text().splitlines()[-1])
    assert record["outcome"] == "granted" and record["resolution"] == "door_closed"
    assert record["traveller_token"] and record["frame_sent"]


def test_door_never_opened_closes_the_relay(rig, detector, client, demo_photos, tmp_path):
    simulator, _, gate = rig
    wf = make_workflow(detector, client, gate, tmp_path)
    result = wf.board(KeptSource(demo_photos / "obama2.jpg"))
    assert result.outcome == "granted"
    assert wait_for(lambda: simulator.relay_open)
    assert gate.wait_for(State.READY, timeout=5)
    assert gate.history[-1].reason == "no passage"
    assert wait_for(lambda: not simulator.relay_open)
    assert wait_for(lambda: simulator.indicator == Indicator.READY)
    assert simulator.relay_history[-1] is False
    assert wf.wait_idle(5)
    assert wf.log.records[-1]["resolution"] == "passage_timeout"


def test_opt_out_pressed_mid_verify_against_the_real_service(
    rig, detector, matcher, encoder, demo_photos, tmp_path, monkeypatch
):
    simulator, _, gate = rig
    receipts = len(matcher.service.purge_receipts)
    in_service = threading.Event()
    let_go = threading.Event()
    real_encode = encoder.encode

    def slow_encode(image):  # the service is slow: the traveller presses while it works
        in_service.set()
        let_go.wait(10)
        return real_encode(image)

    monkeypatch.setattr(encoder, "encode", slow_encode)
    decided = threading.Event()  # the service's handler is through (verdict or refusal)
    real_decide = matcher.service._decide

    def watched_decide(*args, **kwargs):
        try:
            return real_decide(*args, **kwargs)
        finally:
            decided.set()

    monkeypatch.setattr(matcher.service, "_decide", watched_decide)
    kept: list = []
    real_track = CaptureTransaction.track
    monkeypatch.setattr(
        CaptureTransaction, "track", lambda tx, b: (kept.append(b), real_track(tx, b))[1]
    )
    client = matcher.client()
    client.open_session(FLIGHT)
    wf = make_workflow(detector, client, gate, tmp_path)

    def press() -> None:
        if in_service.wait(10) and gate.phase is State.VERIFYING:
            simulator.press_opt_out()

    presser = threading.Thread(target=press)
    presser.start()
    try:
        source = KeptSource(demo_photos / "obama2.jpg")
        result = wf.board(source)
        # The traveller is on their way to the agent while the service is still encoding.
        assert in_service.is_set() and not let_go.is_set()
    finally:
        let_go.set()
        presser.join()
    assert result.outcome == "manual_check" and result.reason == "opted out while verifying"
    assert result.frame_sent
    assert len(kept) == 4 and all(not np.asarray(b).any() for b in kept + source.frames)
    assert gate.phase is State.MANUAL_CHECK
    assert wait_for(lambda: simulator.indicator == Indicator.OPT_OUT_ACK)
    assert decided.wait(15), "the service finished its (cancelled) call"
    verified = [r.capture_id for r in matcher.service.audit.verify_log()]
    assert result.capture_id not in verified, "no verification recorded after the opt-out"
    assert len(matcher.service.purge_receipts) == receipts, "nothing more sent"
    assert simulator.relay_pulses == []
    wf.scan(AGENT.action("RELEASE"))
    assert wait_for(lambda: simulator.relay_open)
    assert simulator.relay_pulses == [3000]
    client.close()


def test_link_lost_goes_out_of_service_and_comes_back(rig):
    simulator, _, gate = rig
    simulator.pause_link(1.5)
    assert gate.wait_for(State.OUT_OF_SERVICE, timeout=5)
    assert gate.capturing() is False
    assert gate.wait_for(State.READY, timeout=10)
    assert wait_for(lambda: simulator.indicator == Indicator.READY)
    assert not simulator.relay_open


def test_mcu_reboot_mid_grant_goes_out_of_service_then_ready(rig):
    simulator, _, gate = rig
    assert gate.fire(Event.PASS_REFUSED, "a traveller for the agent")
    assert gate.agent_release()
    assert wait_for(lambda: simulator.relay_open)
    simulator.reboot()
    assert gate.wait_for(State.OUT_OF_SERVICE, timeout=5)
    assert not simulator.relay_open
    assert gate.wait_for(State.READY, timeout=10)
    assert wait_for(lambda: simulator.indicator == Indicator.READY)


@pytest.fixture(scope="module")
def pass_matcher(pki, encoder, demo_photos, tmp_path_factory):
    """A flight whose gallery knows each passenger's name and booking reference."""
    work = tmp_path_factory.mktemp("pass-flight")
    manifest = work / "gallery.json"
    manifest.write_text(
        json.dumps(
            [
                {
                    "traveller_id": "PAX-OB",
                    "category": "in_scope",
                    "photo": str(demo_photos / "obama.jpg"),
                    "pnr": OBAMA.pnr,
                    "name": OBAMA.name,
                },
                {
                    "traveller_id": "PAX-BI",
                    "category": "in_scope",
                    "photo": str(demo_photos / "biden.jpg"),
                    "pnr": BIDEN.pnr,
                    "name": BIDEN.name,
                },
            ]
        )
    )
    gallery = Gallery(work / "gallery.sqlite")
    key = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)
    gallery.enroll_manifest(key, manifest, encoder, photos_root=demo_photos)
    service = service_from_pki(pki, gallery, encoder)
    server, port = start_server(service, pki)
    yield f"localhost:{port}"
    server.stop(grace=None)


@pytest.mark.parametrize(
    ("holder", "outcome", "reason"),
    [(OBAMA, "granted", "match"), (BIDEN, "referred", "no_match")],
)
def test_pass_then_face_on_the_real_service(
    rig, detector, pki, pass_matcher, demo_photos, tmp_path, holder, outcome, reason
):
    simulator, _, gate = rig
    client = MatchingClient(pass_matcher, pki, DEV_DEVICE_ID, deadline_s=10)
    client.open_session(FLIGHT)
    try:
        wf = make_workflow(detector, client, gate, tmp_path, Mode.PASS_THEN_FACE)
        assert wf.scan(bcbp(holder, 21)).ok
        assert wait_for(lambda: simulator.indicator == Indicator.CAPTURING)
        result = wf.board(KeptSource(demo_photos / "obama2.jpg"))
    finally:
        client.close()
    assert (result.outcome, result.reason) == (outcome, reason)
    if outcome == "granted":
        assert wait_for(lambda: simulator.relay_pulses == [3000])
        assert "21" in wf.boarded.sequences
    else:
        assert wait_for(lambda: simulator.indicator == Indicator.SEE_AGENT)
        assert simulator.relay_pulses == [] and not wf.boarded.sequences
