"""Pass-then-face: the match must be the passenger named on the scanned boarding pass."""

from __future__ import annotations

import json
import uuid

import cv2
import numpy as np
import pytest

from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb
from matching_service.audit import AuditLog
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.gallery import Gallery, flight_key
from matching_service.passes import BoardingPassError, passenger_from_bcbp
from matching_service.server import service_from_pki, start_server
from testbed.testing import FLIGHT, make_bcbp

FLIGHT_KEY = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)


@pytest.fixture(scope="module")
def pass_rig(pki, encoder, demo_photos, tmp_path_factory):
    work = tmp_path_factory.mktemp("pass")
    manifest = work / "gallery.json"
    manifest.write_text(
        json.dumps(
            [
                {
                    "traveller_id": "PAX-OB",
                    "category": "us_citizen",
                    "photo": str(demo_photos / "obama.jpg"),
                    "pnr": "ABC123",
                    "name": "OBAMA/BARACK",
                },
                {
                    "traveller_id": "PAX-BI",
                    "category": "in_scope",
                    "photo": str(demo_photos / "biden.jpg"),
                    "pnr": "XYZ789",
                },
            ]
        )
    )
    gallery = Gallery(work / "gallery.sqlite")
    gallery.enroll_manifest(FLIGHT_KEY, manifest, encoder, photos_root=demo_photos)
    audit = AuditLog()
    service = service_from_pki(pki, gallery, encoder, audit=audit)
    server, port = start_server(service, pki)
    client = MatchingClient(f"localhost:{port}", pki, DEV_DEVICE_ID, deadline_s=10)
    client.open_session(FLIGHT)

    def verify(photo, boarding_pass: str = "") -> pb.Verdict:
        jpeg = cv2.imencode(".jpg", cv2.imread(str(demo_photos / photo)))[1].tobytes()
        capture_id = str(uuid.uuid4())
        sealed = bytearray(sealed_size(len(jpeg)))
        at = now_ms()
        binding = client.binding(capture_id, at, boarding_pass)
        seal_into(sealed, jpeg, client.sealing_key, binding)
        return client.verify(capture_id, at, sealed, boarding_pass)

    yield verify, gallery, audit
    client.close()
    server.stop(grace=None)


def test_face_of_the_pass_holder_matches(pass_rig):
    verify, gallery, audit = pass_rig
    verdict = verify("obama2.jpg", make_bcbp("OBAMA/BARACK", "ABC123"))
    assert verdict.decision == pb.MATCH
    assert verdict.traveller_token == gallery.tokens(FLIGHT_KEY)["PAX-OB"]
    assert audit.verify_log()[-1].pass_checked


def test_face_of_someone_else_on_the_flight_is_no_match(pass_rig):
    verify, _, _ = pass_rig
    verdict = verify("obama2.jpg", make_bcbp("BIDEN/JOSEPH", "XYZ789"))
    assert verdict.decision == pb.NO_MATCH and verdict.traveller_token == ""


def test_name_must_agree_when_the_gallery_has_one(pass_rig):
    verify, _, _ = pass_rig
    assert verify("obama2.jpg", make_bcbp("OBAMA/MICHELLE", "ABC123")).decision == pb.NO_MATCH


def test_stranger_with_a_pass_is_not_on_flight(pass_rig):
    verify, _, _ = pass_rig
    assert verify("astronaut.png", make_bcbp("OBAMA/BARACK", "ABC123")).decision == (
        pb.NOT_ON_FLIGHT
    )


def test_face_only_mode_still_matches(pass_rig):
    verify, _, _ = pass_rig
    assert verify("obama2.jpg").decision == pb.MATCH


def test_unusable_image(pass_rig, tmp_path):
    verify, _, _ = pass_rig
    blank = tmp_path / "blank.png"  # an absolute path: demo_photos / blank == blank
    cv2.imwrite(str(blank), np.full((300, 300, 3), 128, np.uint8))
    assert verify(blank).decision == pb.IMAGE_UNUSABLE


def test_bcbp_parsing():
    text = make_bcbp("DOE/JANE", "pnr777")
    assert len(text) == 60
    assert passenger_from_bcbp(text).name == "DOE/JANE"
    assert passenger_from_bcbp(text).pnr == "PNR777"
    for bad in ("", "X" * 60, "M0" + text[2:], text[:59], "M1" + "\x00" * 58, "M1" + "a" * 5000):
        with pytest.raises(BoardingPassError):
            passenger_from_bcbp(bad)


def test_pass_holder_is_compared_one_to_one_even_when_another_face_is_nearer(tmp_path):
    """1:N ranking must not refuse the pass holder because a co-passenger is closer."""
    from pathlib import Path as _Path

    import numpy as np

    from matching_service.gallery import Gallery, ManifestEntry
    from matching_service.passes import Passenger

    gallery = Gallery(tmp_path / "g.sqlite")
    live, holder, other = np.eye(128, dtype=np.float32)[:3]
    holder = (live + 0.30 * holder) / np.linalg.norm(live + 0.30 * holder)
    other = (live + 0.25 * other) / np.linalg.norm(live + 0.25 * other)  # other is nearer
    gallery.enroll_templates(
        "F",
        [
            (ManifestEntry("PAX-1", "in_scope", (_Path("-"),), "ABC123", "DOE/JANE"), holder),
            (ManifestEntry("PAX-2", "in_scope", (_Path("-"),), "XYZ789", "ROE/RICHARD"), other),
        ],
    )
    assert gallery.nearest("F", live).traveller_id == "PAX-2"
    match = gallery.passenger_match("F", live, Passenger("DOE/JANE", "ABC123"))
    assert match is not None and match.traveller_id == "PAX-1"
    assert match.distance == pytest.approx(1 - 1 / np.sqrt(1 + 0.30**2), abs=1e-6)
    assert gallery.passenger_match("F", live, Passenger("DOE/JOHN", "ABC123")) is None
    assert gallery.passenger_match("F", live, Passenger("DOE/JANE", "NOPE00")) is None
