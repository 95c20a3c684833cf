"""Health checking and the circuit breaker against the real mTLS gRPC server."""

from __future__ import annotations

import os
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from appliance.errors import CircuitOpen, MatchingUnavailable
from appliance.matching.breaker import CircuitBreaker
from appliance.matching.client import MatchingClient
from gate_contract.clock import now_ms
from gate_contract.keys import load_private
from gate_contract.sealing import seal_into, sealed_size
from gate_contract.wire import pb
from matching_service.dev_ca import DEV_DEVICE_ID
from matching_service.gallery import Gallery
from matching_service.server import start_server
from matching_service.servicer import MatchingService
from testbed.runs import wait_for
from testbed.testing import FLIGHT


class Sealed(bytearray):
    """A sealed test capture that remembers the capture time it is bound to."""

    at_ms = 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_service(pki, tmp_path) -> MatchingService:
    return MatchingService(
        Gallery(tmp_path / "empty.sqlite"),
        None,
        load_private(pki.sealing_key),
        load_private(pki.signing_key),
    )


def sealed_capture(client: MatchingClient) -> tuple[str, bytearray]:
    capture_id = os.urandom(8).hex()
    plain = b"not really a jpeg"
    out = Sealed(sealed_size(len(plain)))
    out.at_ms = now_ms()  # the capture time it is sealed to, and sent with
    seal_into(out, plain, client.sealing_key, client.binding(capture_id, out.at_ms))
    return capture_id, out


def test_standard_health_service_answers_over_mtls(pki, tmp_path):
    service = make_service(pki, tmp_path)
    server, port = start_server(service, pki)
    client = MatchingClient(f"localhost:{port}", pki, DEV_DEVICE_ID, deadline_s=5)
    try:
        assert client.health() is True
        stub = health_pb2_grpc.HealthStub(client._channel)
        for name in ("", "gate.v1.Matching"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        service.health.set("gate.v1.Matching", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert client.health() is False
    finally:
        client.close()
        server.stop(grace=None)


def test_stopped_server_fails_fast_and_restart_recovers_on_its_own(pki, tmp_path):
    clock = Clock()
    service = make_service(pki, tmp_path)
    server, port = start_server(service, pki)
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=5, clock=clock)
    client = MatchingClient(f"localhost:{port}", pki, DEV_DEVICE_ID, deadline_s=3, breaker=breaker)
    try:
        assert client.open_session(FLIGHT).gallery_ready is False
        capture_id, sealed = sealed_capture(client)
        verdict = client.verify(capture_id, sealed.at_ms, sealed)
        assert verdict.decision == pb.GALLERY_NOT_READY

        server.stop(grace=None).wait()
        failures = 0
        while breaker.state == "closed":
            capture_id, sealed = sealed_capture(client)
            with pytest.raises(MatchingUnavailable) as err:
                client.verify(capture_id, sealed.at_ms, sealed)
            assert not isinstance(err.value, CircuitOpen)
            failures += 1
            assert failures <= 3
        assert failures == 3 and breaker.state == "open"
        # Open: the call is not even attempted, the gate can say "see agent" at once.
        for _ in range(5):
            capture_id, sealed = sealed_capture(client)
            with pytest.raises(CircuitOpen):
                client.verify(capture_id, sealed.at_ms, sealed)
        with pytest.raises(CircuitOpen):
            client.open_session(FLIGHT)

        server, port2 = start_server(service, pki, f"127.0.0.1:{port}")
        assert port2 == port
        clock.now += 5  # cool-down over: the next call probes health and goes through

        def recovered() -> bool:
            try:
                client.open_session(FLIGHT)
            except MatchingUnavailable:
                clock.now += 5
                return False
            return True

        assert wait_for(recovered, 15.0), "the client did not recover after the service came back"
        assert breaker.state == "closed"
        capture_id, sealed = sealed_capture(client)
        assert client.verify(capture_id, sealed.at_ms, sealed).decision == pb.GALLERY_NOT_READY
    finally:
        client.close()
        server.stop(grace=None)


class SlowService(MatchingService):
    """OpenSession hangs until released: a service that is up but too slow."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.calls = 0

    def OpenSession(self, request, context):
        self.calls += 1
        self.release.wait(10)
        return super().OpenSession(request, context)


def test_slow_service_trips_the_breaker_with_deadlines(pki, tmp_path):
    service = SlowService(
        Gallery(tmp_path / "g.sqlite"), None, load_private(pki.sealing_key),
        load_private(pki.signing_key),
    )  # fmt: skip
    server, port = start_server(service, pki)
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=60, clock=clock)
    client = MatchingClient(
        f"localhost:{port}", pki, DEV_DEVICE_ID, deadline_s=0.3, breaker=breaker
    )
    try:
        assert client.health() is True
        for _ in range(2):
            with pytest.raises(MatchingUnavailable, match="DEADLINE_EXCEEDED"):
                client.open_session(FLIGHT)
        assert breaker.state == "open"
        calls = service.calls
        with pytest.raises(CircuitOpen):
            client.open_session(FLIGHT)
        assert service.calls == calls
    finally:
        service.release.set()
        client.close()
        server.stop(grace=None)
