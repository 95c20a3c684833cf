"""Circuit breaker, deadlines and retry policy of the matching client (no network)."""

from __future__ import annotations

import grpc
import pytest

from appliance.errors import CircuitOpen, MatchingUnavailable
from appliance.matching.breaker import CircuitBreaker
from appliance.matching.client import MatchingClient
from gate_contract.wire import pb
from testbed.testing import FLIGHT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "fake"


def test_breaker_opens_after_consecutive_failures_only():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # a success resets the count
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed"
    assert breaker.acquire() is False
    breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen, match="circuit open"):
        breaker.acquire()


def test_breaker_half_opens_after_cooldown_and_recovers():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.failure()
    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    clock.now += 0.2
    assert breaker.state == "half_open"
    assert breaker.acquire() is True  # this caller probes
    with pytest.raises(CircuitOpen, match="probing"):
        breaker.acquire()  # everyone else still fails fast
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.acquire() is False


def test_failed_probe_opens_for_another_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5, clock=clock)
    breaker.failure()
    breaker.failure()
    clock.now += 5
    assert breaker.acquire() is True
    breaker.failure()  # one failure in half-open is enough
    assert breaker.state == "open"
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    clock.now += 0.1
    assert breaker.acquire() is True


def test_breaker_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(cooldown_s=0)


class ScriptedStub:
    """Stands in for the gRPC stub: each call pops the next outcome."""

    def __init__(self, outcomes) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, float]] = []

    def _next(self, name, timeout):
        self.calls.append((name, timeout))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def OpenSession(self, request, timeout, wait_for_ready=False):
        return self._next("OpenSession", timeout)

    def ReportPurge(self, request, timeout):
        return self._next("ReportPurge", timeout)

    def Verify(self, chunks, timeout):
        list(chunks)
        return self._next("Verify", timeout)


@pytest.fixture
def scripted(pki):
    clock = Clock()
    sleeps: list[float] = []
    client = MatchingClient(
        "localhost:1",
        pki,
        "gate-dev-0001",
        deadline_s=2.0,
        breaker=CircuitBreaker(failure_threshold=3, cooldown_s=30, clock=clock),
        retries=2,
        backoff_s=0.01,
        sleep=sleeps.append,
    )
    yield client, clock, sleeps
    client.close()


UNAVAILABLE = FakeRpcError(grpc.StatusCode.UNAVAILABLE)


def test_idempotent_open_session_is_retried_with_bounded_backoff(scripted):
    client, _, sleeps = scripted
    client._stub = ScriptedStub(
        [UNAVAILABLE, UNAVAILABLE, pb.OpenSessionResponse(session_id="s1", gallery_ready=True)]
    )
    assert client.open_session(FLIGHT).session_id == "s1"
    assert [c[0] for c in client._stub.calls] == ["OpenSession"] * 3
    assert len(sleeps) == 2 and sleeps[0] <= 0.01 and sleeps[1] <= 0.02
    assert all(0 < timeout <= 2.0 for _, timeout in client._stub.calls)  # every call has one
    assert client.breaker.state == "closed"


def test_retries_stop_after_the_bound(scripted):
    client, _, sleeps = scripted
    client._stub = ScriptedStub([UNAVAILABLE] * 5)
    with pytest.raises(MatchingUnavailable, match="UNAVAILABLE"):
        client.open_session(FLIGHT)
    assert len(client._stub.calls) == 3 and len(sleeps) == 2


def test_verify_is_never_retried(scripted):
    client, _, sleeps = scripted
    client._stub = ScriptedStub([UNAVAILABLE, pb.Verdict()])
    with pytest.raises(MatchingUnavailable, match="UNAVAILABLE"):
        client.verify("cap-1", 0, bytearray(b"x" * 100))
    assert [c[0] for c in client._stub.calls] == ["Verify"] and sleeps == []


def test_application_refusals_are_not_retried_and_do_not_trip(scripted):
    client, _, _ = scripted
    client._stub = ScriptedStub([FakeRpcError(grpc.StatusCode.PERMISSION_DENIED)] * 5)
    for _ in range(4):
        with pytest.raises(MatchingUnavailable, match="PERMISSION_DENIED"):
            client.open_session(FLIGHT)
    assert len(client._stub.calls) == 4
    assert client.breaker.state == "closed"


def test_report_purge_is_retried_and_reports_false_when_it_gives_up(scripted):
    client, _, _ = scripted
    from appliance.custody.transaction import CaptureTransaction

    record = CaptureTransaction("gate-dev-0001").purge("referred", "test")
    client._stub = ScriptedStub([UNAVAILABLE, pb.PurgeAck(recorded=True)])
    assert client.report_purge(record) is True
    client._stub = ScriptedStub([UNAVAILABLE] * 3)
    assert client.report_purge(record) is False


def test_timeouts_open_the_breaker_and_then_calls_fail_without_trying(scripted):
    client, clock, _ = scripted
    timeout = FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED)
    client._stub = ScriptedStub([timeout] * 3)
    for _ in range(3):
        with pytest.raises(MatchingUnavailable, match="DEADLINE_EXCEEDED"):
            client.verify("cap", 0, bytearray(b"x"))
    assert client.breaker.state == "open"
    with pytest.raises(CircuitOpen):
        client.verify("cap", 0, bytearray(b"x"))
    with pytest.raises(CircuitOpen):
        client.open_session(FLIGHT)
    assert client.report_purge(_record()) is False
    assert len(client._stub.calls) == 3, "an open breaker sends nothing"

    # After the cool-down the next call probes health first; a failed probe re-opens.
    clock.now += 30
    client._probe_health = lambda: False
    with pytest.raises(CircuitOpen, match="health probe"):
        client.open_session(FLIGHT)
    assert client.breaker.state == "open" and len(client._stub.calls) == 3
    clock.now += 30
    client._probe_health = lambda: True
    client._stub = ScriptedStub([pb.OpenSessionResponse(session_id="back")])
    assert client.open_session(FLIGHT).session_id == "back"
    assert client.breaker.state == "closed"


def _record():
    from appliance.custody.transaction import CaptureTransaction

    return CaptureTransaction("gate-dev-0001").purge("referred", "test")
