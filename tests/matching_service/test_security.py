"""Every refusal of the matching service over the real mTLS server: a specific gRPC
status for the caller, an audit entry on the service, and a service that keeps serving."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509 import load_pem_x509_certificate

from appliance.errors import MatchingUnavailable
from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.keys import load_private
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb, pb_grpc
from matching_service.audit import AuditLog
from matching_service.dev_ca import DEV_DEVICE_ID, issue_device
from matching_service.errors import RevocationError
from matching_service.gallery import Gallery
from matching_service.revocation import RevocationList
from matching_service.server import start_server
from matching_service.servicer import MAX_CHUNKS, MAX_SEALED_BYTES, MatchingService
from testbed.testing import FLIGHT
from tests.support import copy_layout


class Sealed(bytearray):
    """A sealed test capture that remembers the capture time it is bound to."""

    at_ms = 0


class Rig:
    def __init__(self, pki, work: Path) -> None:
        self.pki = pki
        self.work = work
        self.offset_ms = 0
        self.revocation_file = work / "revoked.json"
        self.revocation_file.write_text(json.dumps({"serials": [], "devices": []}))
        self.service = MatchingService(
            Gallery(work / "gallery.sqlite"),
            None,
            load_private(pki.sealing_key),
            load_private(pki.signing_key),
            audit=AuditLog(work / "audit.sqlite"),
            revocations=RevocationList(self.revocation_file),
            clock_ms=lambda: now_ms() + self.offset_ms,
        )
        self.server, self.port = start_server(self.service, pki)
        self.clients: list[MatchingClient] = []

    def client(self, layout=None, device_id: str = DEV_DEVICE_ID, session: bool = True):
        client = MatchingClient(
            f"localhost:{self.port}", layout or self.pki, device_id, deadline_s=5
        )
        self.clients.append(client)
        if session:
            client.open_session(FLIGHT)
        return client

    def events(self, event: str):
        return self.service.audit.events(event)


@pytest.fixture(scope="module")
def rig(pki, tmp_path_factory):
    rig = Rig(pki, tmp_path_factory.mktemp("security"))
    yield rig
    for client in rig.clients:
        client.close()
    rig.server.stop(grace=None)


def seal(client: MatchingClient, capture_id: str | None = None, plain: bytes = b"\xff\xd8 jpeg"):
    capture_id = capture_id or os.urandom(8).hex()
    out = Sealed(sealed_size(len(plain)))
    out.at_ms = now_ms()  # the capture time it is sealed to, and sent with
    seal_into(out, plain, client.sealing_key, client.binding(capture_id, out.at_ms))
    return capture_id, out


def header(client: MatchingClient, capture_id: str, size: int, **fields) -> pb.CaptureHeader:
    values = {
        "session_id": client.session_id,
        "capture_id": capture_id,
        "device_id": client.device_id,
        "captured_at_ms": now_ms(),
        "sealed_size": size,
        "sealing_key_id": client._sealing_kid,
    }
    values.update(fields)
    return pb.CaptureHeader(**values)


def raw_verify(client: MatchingClient, chunks) -> grpc.StatusCode:
    stub = pb_grpc.MatchingStub(client._channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Verify(iter(chunks), timeout=10)
    return err.value.code()


def assert_refused(rig, event, status: str, capture_id: str = "", count_before: int = 0):
    events = rig.events(event)
    assert len(events) == count_before + 1, f"no audit entry {event}: {events}"
    assert events[-1].status == status
    if capture_id:
        assert events[-1].capture_id == capture_id


def assert_still_serving(rig):
    client = rig.client()
    assert client.health()
    capture_id, sealed = seal(client)
    assert client.verify(capture_id, sealed.at_ms, sealed).decision == pb.GALLERY_NOT_READY


def test_tampered_ciphertext(rig):
    client = rig.client()
    capture_id, sealed = seal(client)
    sealed[-5] ^= 0x40
    with pytest.raises(MatchingUnavailable, match="INVALID_ARGUMENT"):
        client.verify(capture_id, sealed.at_ms, sealed)
    assert_refused(rig, "tampered_payload", "INVALID_ARGUMENT", capture_id)
    assert_still_serving(rig)


def test_payload_sealed_for_another_capture_is_tampered(rig):
    client = rig.client()
    _, sealed = seal(client, capture_id="original")
    before = len(rig.events("tampered_payload"))
    with pytest.raises(MatchingUnavailable, match="INVALID_ARGUMENT"):
        client.verify("another", sealed.at_ms, sealed)
    assert_refused(rig, "tampered_payload", "INVALID_ARGUMENT", "another", before)


def test_wrong_sealing_key_id(rig, tmp_path):
    layout = copy_layout(rig.pki, tmp_path / "wrong-key")
    other = X25519PrivateKey.generate().public_key()
    layout.sealing_public.write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    client = rig.client(layout)
    capture_id, sealed = seal(client)
    with pytest.raises(MatchingUnavailable, match="FAILED_PRECONDITION"):
        client.verify(capture_id, sealed.at_ms, sealed)
    assert_refused(rig, "unknown_sealing_key", "FAILED_PRECONDITION", capture_id)


def test_unknown_session(rig):
    client = rig.client()
    client.session_id = "no-such-session"
    capture_id, sealed = seal(client)
    with pytest.raises(MatchingUnavailable, match="NOT_FOUND"):
        client.verify(capture_id, sealed.at_ms, sealed)
    assert_refused(rig, "unknown_session", "NOT_FOUND", capture_id)


def test_session_of_another_device(rig, tmp_path):
    other = rig.client(issue_device(rig.pki, tmp_path / "b", "gate-b-0002"), "gate-b-0002")
    client = rig.client()
    client.session_id = other.session_id
    capture_id, sealed = seal(client)
    with pytest.raises(MatchingUnavailable, match="PERMISSION_DENIED"):
        client.verify(capture_id, sealed.at_ms, sealed)
    assert_refused(rig, "session_of_other_device", "PERMISSION_DENIED", capture_id)


def test_unknown_device_id_in_the_header(rig):
    client = rig.client()
    before = len(rig.events("device_mismatch"))
    capture_id, sealed = seal(client)
    code = raw_verify(
        client,
        [
            pb.VerifyChunk(header=header(client, capture_id, len(sealed), device_id="gate-x")),
            pb.VerifyChunk(sealed_data=bytes(sealed)),
        ],
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert_refused(rig, "device_mismatch", "PERMISSION_DENIED", capture_id, before)
    impostor = rig.client(device_id="gate-someone-else", session=False)
    with pytest.raises(MatchingUnavailable, match="PERMISSION_DENIED"):
        impostor.open_session(FLIGHT)
    assert len(rig.events("device_mismatch")) == before + 2


def test_replayed_capture_id(rig):
    client = rig.client()
    capture_id, sealed = seal(client)
    copy = bytearray(sealed)
    client.verify(capture_id, sealed.at_ms, sealed)
    with pytest.raises(MatchingUnavailable, match="ALREADY_EXISTS"):
        client.verify(capture_id, sealed.at_ms, copy)
    assert_refused(rig, "replayed_capture", "ALREADY_EXISTS", capture_id)


@pytest.mark.parametrize("skew_ms", [-120_000, 120_000])
def test_capture_time_outside_window(rig, skew_ms):
    client = rig.client()
    before = len(rig.events("capture_time_outside_window"))
    capture_id, sealed = seal(client)
    with pytest.raises(MatchingUnavailable, match="OUT_OF_RANGE"):
        client.verify(capture_id, sealed.at_ms + skew_ms, sealed)
    assert_refused(rig, "capture_time_outside_window", "OUT_OF_RANGE", capture_id, before)


def test_declared_size_above_the_limit(rig):
    client = rig.client()
    code = raw_verify(
        client, [pb.VerifyChunk(header=header(client, "big-1", MAX_SEALED_BYTES + 1))]
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_refused(rig, "oversize_capture", "RESOURCE_EXHAUSTED", "big-1")


def test_too_many_chunks(rig):
    client = rig.client()
    size = MAX_CHUNKS + 100
    chunks = [pb.VerifyChunk(header=header(client, "many-1", size))]
    chunks += [pb.VerifyChunk(sealed_data=b"\x00")] * size
    assert raw_verify(client, chunks) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_refused(rig, "too_many_chunks", "RESOURCE_EXHAUSTED", "many-1")


def test_more_bytes_than_declared(rig):
    client = rig.client()
    before = len(rig.events("size_mismatch"))
    chunks = [
        pb.VerifyChunk(header=header(client, "over-1", 10)),
        pb.VerifyChunk(sealed_data=b"\x00" * 11),
    ]
    assert raw_verify(client, chunks) == grpc.StatusCode.INVALID_ARGUMENT
    assert_refused(rig, "size_mismatch", "INVALID_ARGUMENT", "over-1", before)


def test_single_message_above_the_transport_limit(rig):
    client = rig.client()
    chunks = [
        pb.VerifyChunk(header=header(client, "huge-1", 2 * 1024 * 1024)),
        pb.VerifyChunk(sealed_data=b"\x00" * (2 * 1024 * 1024)),
    ]
    assert raw_verify(client, chunks) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_still_serving(rig)


@pytest.mark.parametrize(
    "chunks",
    [[], [pb.VerifyChunk(sealed_data=b"abc")], [pb.VerifyChunk()]],
    ids=["empty-stream", "data-first", "empty-chunk"],
)
def test_header_missing(rig, chunks):
    client = rig.client()
    before = len(rig.events("header_missing"))
    assert raw_verify(client, chunks) == grpc.StatusCode.INVALID_ARGUMENT
    assert_refused(rig, "header_missing", "INVALID_ARGUMENT", count_before=before)


def test_revoked_device_by_id_from_the_list_file(rig, tmp_path):
    layout = issue_device(rig.pki, tmp_path / "r1", "gate-revoked-0003")
    client = rig.client(layout, "gate-revoked-0003")  # fine before revocation
    rig.revocation_file.write_text(json.dumps({"devices": ["gate-revoked-0003"]}))
    os.utime(rig.revocation_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    capture_id, sealed = seal(client)
    with pytest.raises(MatchingUnavailable, match="UNAUTHENTICATED"):
        client.verify(capture_id, sealed.at_ms, sealed)
    events = rig.events("certificate_revoked")
    assert events and events[-1].device_id == "gate-revoked-0003"
    assert events[-1].status == "UNAUTHENTICATED"
    with pytest.raises(MatchingUnavailable, match="UNAUTHENTICATED"):
        client.open_session(FLIGHT)
    assert_still_serving(rig)


def test_revoked_certificate_by_serial(rig, tmp_path):
    layout = issue_device(rig.pki, tmp_path / "r2", "gate-revoked-0004")
    serial = load_pem_x509_certificate(layout.device_cert.read_bytes()).serial_number
    rig.service.revocations.revoke(serial=serial)
    before = len(rig.events("certificate_revoked"))
    client = rig.client(layout, "gate-revoked-0004", session=False)
    with pytest.raises(MatchingUnavailable, match="UNAUTHENTICATED"):
        client.open_session(FLIGHT)
    assert len(rig.events("certificate_revoked")) == before + 1
    assert "serial" in rig.events("certificate_revoked")[-1].detail


def test_revocation_list_parsing(tmp_path):
    path = tmp_path / "rl.json"
    path.write_text(json.dumps({"serials": ["0x1F", "31", 7], "devices": ["gate-9"]}))
    rl = RevocationList(path)
    assert rl.is_revoked(31, "x") == "serial" and rl.is_revoked(7, "x") == "serial"
    assert rl.is_revoked(8, "gate-9") == "device" and rl.is_revoked(8, "gate-1") is None
    path.write_text("{not json")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    assert rl.is_revoked(31, "x") == "serial", "a broken file keeps the last good list"
    with pytest.raises(RevocationError):
        RevocationList(path)
    with pytest.raises(RevocationError):
        RevocationList(tmp_path / "missing.json")


def test_expired_certificate_is_refused_at_the_handshake(rig, tmp_path):
    now = dt.datetime.now(dt.UTC)
    layout = issue_device(
        rig.pki,
        tmp_path / "expired",
        "gate-expired-0005",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    client = rig.client(layout, "gate-expired-0005", session=False)
    client._deadline = 2.0
    with pytest.raises(MatchingUnavailable, match=r"UNAVAILABLE|DEADLINE_EXCEEDED"):
        client.open_session(FLIGHT)
    assert_still_serving(rig)


def test_certificate_expiring_on_an_open_connection(rig, tmp_path):
    now = dt.datetime.now(dt.UTC)
    layout = issue_device(
        rig.pki, tmp_path / "short", "gate-short-0006", not_after=now + dt.timedelta(hours=1)
    )
    client = rig.client(layout, "gate-short-0006")
    before = len(rig.events("certificate_expired"))
    rig.offset_ms = 2 * 3_600_000  # the service's clock is now past the certificate
    try:
        capture_id, sealed = seal(client)
        with pytest.raises(MatchingUnavailable, match="UNAUTHENTICATED"):
            client.verify(capture_id, sealed.at_ms + rig.offset_ms, sealed)
    finally:
        rig.offset_ms = 0
    events = rig.events("certificate_expired")
    assert len(events) == before + 1 and events[-1].device_id == "gate-short-0006"


def test_bad_boarding_pass_is_refused(rig):
    client = rig.client()
    capture_id, sealed = seal(client)
    with pytest.raises(MatchingUnavailable, match="INVALID_ARGUMENT"):
        client.verify(capture_id, sealed.at_ms, sealed, boarding_pass="not a boarding pass")
    assert rig.events("bad_boarding_pass")[-1].capture_id == capture_id


def test_purge_receipts_are_recorded_and_checked(rig):
    from appliance.custody.transaction import CaptureTransaction

    client = rig.client()
    before = rig.service.audit.purge_count()
    record = CaptureTransaction(client.device_id).purge("referred", "verdict")
    assert client.report_purge(record) is True
    assert rig.service.audit.purge_count() == before + 1
    forged = CaptureTransaction("gate-else").purge("referred", "verdict")
    assert client.report_purge(forged) is False  # a receipt for another device
    assert rig.events("device_mismatch")[-1].method == "ReportPurge"
    assert rig.service.audit.purge_count() == before + 1


def test_sessions_older_than_a_day_are_dropped_when_new_ones_open(pki, encoder, tmp_path):
    """A long-running service must not grow without bound: one session per gate per day."""
    from appliance.matching.client import MatchingClient
    from matching_service.gallery import Gallery
    from matching_service.server import service_from_pki, start_server
    from matching_service.sessions import SESSION_TTL_MS

    now = [1_800_000_000_000]
    service = service_from_pki(pki, Gallery(tmp_path / "g.sqlite"), encoder)
    service._clock = lambda: now[0]
    server, port = start_server(service, pki)
    try:
        client = MatchingClient(f"localhost:{port}", pki, "gate-dev-0001", deadline_s=10.0)
        client.open_session(FLIGHT)
        first = client.session_id
        now[0] += SESSION_TTL_MS + 1
        client.open_session(FLIGHT)
        assert service.sessions.get(first) is None
        assert service.sessions.get(client.session_id) is not None
        client.close()
    finally:
        server.stop(grace=None)
