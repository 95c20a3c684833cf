"""One caller cannot starve the others, and what callers send wrong leaves one clear line.

The attacks this reproduces: a device that opens 8 Verify streams and sends nothing held
every gRPC worker thread, so Health, OpenSession and Verify failed for every gate; every
cancelled stream and every malformed message logged an ERROR traceback and an
``internal_error`` audit event.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
import pytest

from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb, pb_grpc
from matching_service.audit import AuditLog
from matching_service.dev_ca import issue_device
from matching_service.gallery import Gallery
from matching_service.server import concurrent_rpcs, service_from_pki, start_server
from matching_service.servicer import MAX_STREAMS_PER_DEVICE
from testbed.runs import wait_for
from testbed.testing import FLIGHT


@pytest.fixture
def served(pki, tmp_path):
    service = service_from_pki(pki, Gallery(tmp_path / "g.sqlite"), None, audit=AuditLog())
    server, port = start_server(service, pki, workers=8)
    yield service, f"localhost:{port}"
    server.stop(grace=None)


class IdleStreams:
    """Verify streams that send a header's worth of nothing and then hang."""

    def __init__(self, client: MatchingClient, count: int) -> None:
        self.release = threading.Event()
        self.codes: list[grpc.StatusCode] = []
        self._lock = threading.Lock()
        stub = pb_grpc.MatchingStub(client._channel)
        self.threads = [
            threading.Thread(target=self._one, args=(stub,), daemon=True) for _ in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _silence(self):
        self.release.wait(30)
        return
        yield  # a generator that yields nothing until released

    def _one(self, stub) -> None:
        try:
            stub.Verify(self._silence(), timeout=30)
        except grpc.RpcError as exc:
            with self._lock:
                self.codes.append(exc.code())

    def stop(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(10)


def _verify(client: MatchingClient) -> pb.Verdict:
    capture_id, at = f"cap-{time.monotonic_ns()}", now_ms()
    out = bytearray(sealed_size(4))
    seal_into(out, b"jpeg", client.sealing_key, client.binding(capture_id, at))
    return client.verify(capture_id, at, out)


def test_idle_streams_of_one_device_do_not_stop_the_other_gates(served, pki, tmp_path):
    service, target = served
    attacker = MatchingClient(target, pki, "gate-dev-0001", deadline_s=5)
    attacker.open_session(FLIGHT)
    other_layout = issue_device(pki, tmp_path / "other", "gate-lax-0002")
    other = MatchingClient(target, other_layout, "gate-lax-0002", deadline_s=5, retries=0)
    idle = IdleStreams(attacker, 32)
    try:
        assert wait_for(lambda: service.streams.active("gate-dev-0001") == MAX_STREAMS_PER_DEVICE)
        assert other.health()
        other.open_session(FLIGHT)
        assert _verify(other).decision == pb.GALLERY_NOT_READY
        assert service.streams.active("gate-dev-0001") <= MAX_STREAMS_PER_DEVICE
    finally:
        idle.stop()
        attacker.close()
        other.close()
    # Refused at once for being too many (by the service, or by gRPC's own limits), cut
    # off for sending nothing in time, or refused for having no header once released.
    assert set(idle.codes) <= {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in idle.codes
    assert service.audit.events("too_many_streams")


def test_many_devices_together_are_refused_fast_not_queued(pki, tmp_path):
    """Each device within its own stream limit, together past the server's: the surplus is
    refused at once (RESOURCE_EXHAUSTED), and the server serves again once they go."""
    service = service_from_pki(pki, Gallery(tmp_path / "g.sqlite"), None, audit=AuditLog())
    server, port = start_server(service, pki, workers=2)  # takes 4 calls at once
    target = f"localhost:{port}"
    devices = [
        MatchingClient(target, issue_device(pki, tmp_path / f"d{n}", f"gate-lax-{n:04}"),
                       f"gate-lax-{n:04}", deadline_s=5, retries=0)
        for n in range(3)
    ]  # fmt: skip
    idle = [IdleStreams(device, MAX_STREAMS_PER_DEVICE) for device in devices]
    try:
        assert wait_for(
            lambda: sum(len(streams.codes) for streams in idle) >= 12 - concurrent_rpcs(2), 10.0
        )
        refused = [code for streams in idle for code in streams.codes]
        assert set(refused) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    finally:
        for streams in idle:
            streams.stop()
    try:
        assert wait_for(devices[0].health, 15.0)  # served again once the idle ones went
    finally:
        for device in devices:
            device.close()
        server.stop(grace=None)


def test_a_stream_that_sends_nothing_is_cut_off_and_audited(served, pki):
    service, target = served
    client = MatchingClient(target, pki, "gate-dev-0001", deadline_s=5)
    client.open_session(FLIGHT)
    idle = IdleStreams(client, 1)
    try:
        idle.threads[0].join(15)
    finally:
        idle.stop()
        client.close()
    assert idle.codes == [grpc.StatusCode.CANCELLED]  # the server gave up on it
    assert wait_for(lambda: service.audit.events("capture_too_slow"), 5.0)
    event = service.audit.events("capture_too_slow")[-1]
    assert event.device_id == "gate-dev-0001" and event.status == "DEADLINE_EXCEEDED"


def test_a_malformed_message_is_one_warning_naming_the_peer(served, pki, caplog):
    service, target = served
    client = MatchingClient(target, pki, "gate-dev-0001", deadline_s=5)
    raw = client._channel.unary_unary(
        "/gate.v1.Matching/ReportPurge",
        request_serializer=lambda data: data,
        response_deserializer=pb.PurgeAck.FromString,
    )
    try:
        with caplog.at_level(logging.INFO), pytest.raises(grpc.RpcError) as refused:
            raw(b"\xff\xff\xff\xff", timeout=5)
    finally:
        client.close()
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1 and problems[0].levelno == logging.WARNING
    assert "malformed_message" in problems[0].getMessage()
    assert "127.0.0.1" in problems[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert service.audit.events("malformed_message")
    assert not service.audit.events("internal_error")


def test_a_cancelled_stream_is_normal(served, pki, caplog):
    service, target = served
    client = MatchingClient(target, pki, "gate-dev-0001", deadline_s=5)
    client.open_session(FLIGHT)
    stub = pb_grpc.MatchingStub(client._channel)
    started = threading.Event()

    def header_then_wait():
        header = pb.CaptureHeader(
            session_id=client.session_id,
            capture_id="cap-cancelled",
            device_id=client.device_id,
            captured_at_ms=now_ms(),
            sealed_size=64,
            sealing_key_id=client._sealing_kid,
        )
        yield pb.VerifyChunk(header=header)
        started.set()
        time.sleep(5)

    try:
        with caplog.at_level(logging.INFO, logger="gate.matcher"):
            future = stub.Verify.future(header_then_wait(), timeout=30)
            assert started.wait(5)
            time.sleep(0.2)
            future.cancel()  # the gate's opt-out or its own deadline
            wait_for(lambda: service.audit.events("client_cancelled"), 5.0)
    finally:
        client.close()
    assert service.audit.events("client_cancelled")
    assert not service.audit.events("internal_error")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
