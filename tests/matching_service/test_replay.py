"""Replayed captures never earn a second verdict: not after the replay window, not after a
restart, not under a fresh capture time, not into another session.

The attack this reproduces: a sealed payload that once earned a MATCH, sent again with the
same capture id and a fresh time after 125 s, or after the service restarted, used to be
accepted (replay memory in RAM for 120 s, capture time outside the seal).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import cv2
import pytest

from appliance.errors import MatchingUnavailable
from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.gallery import Gallery, flight_key
from matching_service.server import service_from_pki, start_server
from matching_service.sessions import ReplayGuard
from testbed.testing import FLIGHT

FLIGHT_KEY = flight_key(FLIGHT.carrier, FLIGHT.flight_number, FLIGHT.date, FLIGHT.departure_airport)


class Service:
    """The reference service on loopback over a database file that outlives it."""

    def __init__(self, pki, db: Path, encoder, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms
        self.service = service_from_pki(
            pki,
            Gallery(db),
            encoder,
            replays=ReplayGuard(db),
            clock_ms=lambda: now_ms() + self.offset_ms,
        )
        self.server, port = start_server(self.service, pki)
        self.client_target = f"localhost:{port}"
        self.client = MatchingClient(self.client_target, pki, DEV_DEVICE_ID, deadline_s=10)
        self.client.open_session(FLIGHT)

    def stop(self) -> None:
        self.client.close()
        self.server.stop(grace=None)


@pytest.fixture
def db(tmp_path, encoder, demo_photos) -> Path:
    path = tmp_path / "matcher.sqlite"
    (tmp_path / "obama.jpg").write_bytes((demo_photos / "obama.jpg").read_bytes())
    manifest = tmp_path / "gallery.csv"
    manifest.write_text("traveller_id,category,photo\nPAX-001,us_citizen,obama.jpg\n")
    Gallery(path).enroll_manifest(FLIGHT_KEY, manifest, encoder)
    return path


def sealed_capture(client: MatchingClient, photo: Path) -> tuple[str, int, bytearray]:
    ok, jpeg = cv2.imencode(".jpg", cv2.imread(str(photo)))
    assert ok
    capture_id, at = str(uuid.uuid4()), now_ms()
    sealed = bytearray(sealed_size(jpeg.nbytes))
    seal_into(sealed, jpeg.tobytes(), client.sealing_key, client.binding(capture_id, at))
    return capture_id, at, sealed


def test_a_replay_after_a_restart_is_refused(pki, db, encoder, demo_photos) -> None:
    first = Service(pki, db, encoder)
    try:
        capture_id, at, sealed = sealed_capture(first.client, demo_photos / "obama2.jpg")
        copy = bytearray(sealed)
        assert first.client.verify(capture_id, at, sealed).decision == pb.MATCH
    finally:
        first.stop()
    again = Service(pki, db, encoder)  # a restarted service: new process memory, same db
    try:
        with pytest.raises(MatchingUnavailable, match="ALREADY_EXISTS"):
            again.client.verify(capture_id, at, copy)
        assert again.service.audit.events("replayed_capture")[-1].capture_id == capture_id
    finally:
        again.stop()


def test_a_replay_with_a_fresh_time_after_the_window_is_refused(
    pki, db, encoder, demo_photos
) -> None:
    service = Service(pki, db, encoder)
    try:
        client = service.client
        capture_id, at, sealed = sealed_capture(client, demo_photos / "obama2.jpg")
        same_id, other_id = bytearray(sealed), bytearray(sealed)
        assert client.verify(capture_id, at, sealed).decision == pb.MATCH
        service.offset_ms = 125_000  # the replay window of the old service has passed
        fresh = now_ms() + service.offset_ms
        with pytest.raises(MatchingUnavailable, match="ALREADY_EXISTS"):
            client.verify(capture_id, fresh, same_id)
        # Under a new capture id with a fresh time the seal itself no longer opens.
        with pytest.raises(MatchingUnavailable, match="INVALID_ARGUMENT"):
            client.verify(str(uuid.uuid4()), fresh, other_id)
        assert service.service.audit.events("tampered_payload")
    finally:
        service.stop()


def test_a_payload_replayed_into_another_session_does_not_open(
    pki, db, encoder, demo_photos
) -> None:
    service = Service(pki, db, encoder)
    try:
        capture_id, at, sealed = sealed_capture(service.client, demo_photos / "obama2.jpg")
        # Someone with the unit's credentials sends it in a session of their own: the
        # capture was sealed to the old one. (The unit's own client always names the
        # session a capture was sealed to.)
        other = MatchingClient(service.client_target, pki, DEV_DEVICE_ID, deadline_s=10)
        try:
            other.open_session(FLIGHT)
            with pytest.raises(MatchingUnavailable, match="INVALID_ARGUMENT"):
                other.verify(capture_id, at, sealed)
        finally:
            other.close()
    finally:
        service.stop()
