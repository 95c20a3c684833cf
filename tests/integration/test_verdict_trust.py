"""A verdict opens the gate only when it is authentic and fresh, through the real parts.

Rogue reference services (the real servicer, real mTLS, real recognizer) answer the
real client; the gate is the real controller on the simulator's pty. A service whose
clock is 45 s off either way (inside its own 60 s capture window, outside the gate's
30 s verdict window), one that changes the decision after signing, and one that signs
under the right key id but sends a corrupted signature must each leave the relay shut
and the traveller referred. The honest service, same set-up, opens the gate: the
refusals are the checks working, not a broken rig.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.custody.ledger import PurgeLedger
from appliance.gate.machine import State
from appliance.matching.client import MatchingClient
from appliance.pipeline.traveller import TravellerPipeline
from appliance.vision.camera import ReplaySource
from firmware_bridge.protocol import Indicator
from gate_contract.clock import now_ms
from gate_contract.keys import load_private
from gate_contract.wire import pb
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.gallery import Gallery, flight_key
from matching_service.server import start_server
from matching_service.servicer import MatchingService
from testbed.runs import wait_for
from testbed.testing import FLIGHT

CANVAS = (1280, 720)


class RogueService(MatchingService):
    """The reference servicer, with its verdicts altered after they are signed."""

    def __init__(self, *args, tamper: Callable[[pb.Verdict], None] | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tamper = tamper

    def _decide(self, *args, **kwargs) -> pb.Verdict:
        verdict = super()._decide(*args, **kwargs)
        if self.tamper is not None:
            self.tamper(verdict)
        return verdict


def flip_to_match(verdict: pb.Verdict) -> None:
    verdict.decision = pb.MATCH
    verdict.traveller_token = "forged-token"


def corrupt_signature(verdict: pb.Verdict) -> None:
    signature = bytearray(verdict.signature)
    signature[7] ^= 0x01
    verdict.signature = bytes(signature)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, encoder, demo_photos) -> Gallery:
    work = tmp_path_factory.mktemp("trust")
    manifest = work / "gallery.json"
    entry = {"traveller_id": "PAX-OB", "category": "us_citizen"}
    manifest.write_text(json.dumps([{**entry, "photo": str(demo_photos / "obama.jpg")}]))
    store = Gallery(work / "gallery.sqlite")
    key = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)
    store.enroll_manifest(key, manifest, encoder, photos_root=demo_photos)
    return store


@pytest.fixture
def serve(pki, gallery, encoder) -> Iterator[Callable[..., MatchingClient]]:
    """Start a (rogue) service; returns a client with a session open on it."""
    running: list = []

    def start(
        *, offset_ms: int = 0, tamper: Callable[[pb.Verdict], None] | None = None
    ) -> MatchingClient:
        service = RogueService(
            gallery,
            encoder,
            load_private(pki.sealing_key),
            load_private(pki.signing_key),
            clock_ms=lambda: now_ms() + offset_ms,
            tamper=tamper,
        )
        server, port = start_server(service, pki)
        client = MatchingClient(f"localhost:{port}", pki, DEV_DEVICE_ID, deadline_s=10)
        running.append((server, client))
        client.open_session(FLIGHT)
        return client

    yield start
    for server, client in running:
        client.close()
        server.stop(grace=None)


def board(client, gate_rig, detector, photo: Path, tmp_path):
    pipeline = TravellerPipeline(
        detector, client, gate_rig.gate, PurgeLedger(tmp_path / "ledger.jsonl")
    )
    return pipeline.process(ReplaySource([photo], canvas=CANVAS, repeat=6))


def test_the_honest_service_opens_the_gate(serve, gate_rig, detector, demo_photos, tmp_path):
    result = board(serve(), gate_rig, detector, demo_photos / "obama2.jpg", tmp_path)
    assert result.outcome == "granted", result.reason
    assert wait_for(lambda: gate_rig.simulator.relay_pulses == [3000])


@pytest.mark.parametrize(
    ("photo", "rogue", "refusal"),
    [
        ("obama2.jpg", {"offset_ms": 45_000}, "verdict issued outside the clock window"),
        ("obama2.jpg", {"offset_ms": -45_000}, "verdict issued outside the clock window"),
        ("astronaut.png", {"tamper": flip_to_match}, "verdict signature does not verify"),
        ("obama2.jpg", {"tamper": corrupt_signature}, "verdict signature does not verify"),
    ],
    ids=["clock-45s-ahead", "clock-45s-behind", "decision-changed", "signature-corrupted"],
)
def test_a_stale_or_altered_verdict_never_opens_the_gate(
    serve, gate_rig, detector, demo_photos, tmp_path, photo, rogue, refusal, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="gate.matching"):
        result = board(serve(**rogue), gate_rig, detector, demo_photos / photo, tmp_path)
    assert (result.outcome, result.reason) == ("referred", refusal)
    assert f"refused: {refusal}; the gate stays shut" in caplog.text  # a technician sees it
    assert result.frame_sent and result.purge is not None
    assert gate_rig.gate.phase is State.REFER_TO_AGENT
    assert wait_for(lambda: gate_rig.simulator.indicator == Indicator.SEE_AGENT)
    assert gate_rig.simulator.relay_pulses == [] and not gate_rig.simulator.relay_open
