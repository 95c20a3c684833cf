"""The appliance's side of the matching contract: mTLS channel, sealed upload, checked verdict.

A verdict is returned only after its signature, capture id, device id and time have
been checked (``gate_contract.verdicts``), as a domain :class:`~appliance.matching.verdict.Verdict`;
anything else raises ``VerdictRejected`` and the gate stays shut. Every call has a
deadline. Failures come out as ``appliance.errors.MatchingUnavailable`` with a
``MatchingFailure`` the gate can act on: gRPC stays inside this module.

Only idempotent calls are retried (``OpenSession``, ``ReportPurge``, health), with a
short bounded backoff inside the call's deadline; ``Verify`` never is (a capture id is
single use, and a traveller should not wait twice). A circuit breaker counts transport
failures (unreachable, deadline exceeded, overloaded): after ``failure_threshold`` in a
row it opens and every call fails at once with ``MatchingUnavailable`` so the gate
says "see agent" without making the traveller wait. After ``cooldown_s`` it half-opens:
the next call first probes ``grpc.health.v1`` and, if the service is serving, closes
the breaker and goes ahead; otherwise the breaker opens for another cool-down. The
session keeper's background reopening (``open_session(..., behind_breaker=False)``) is
not behind it: it has its own backoff and nobody waits on it, so it keeps trying
through an outage and its success closes the breaker the moment the service is back.

The keys pinned at enrollment (the service's sealing and verdict-signing public keys)
can stop matching the service's (it was re-keyed): every traveller is then referred,
and the journal says so once at ERROR with the fix (re-enrol), since only a technician
can end it; a verdict that checks out again ends it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from appliance.custody.transaction import PurgeRecord
from appliance.errors import CircuitOpen, MatchingFailure, MatchingUnavailable, VerifyCancelled
from appliance.gate.flight import Flight
from appliance.matching.answers import Decision, Session, Verdict
from appliance.matching.breaker import CircuitBreaker
from gate_contract.clock import now_ms
from gate_contract.errors import VerdictRejected
from gate_contract.keys import (
    PkiLayout,
    load_sealing_public,
    load_signing_public,
)
from gate_contract.sealing import SealBinding, key_id
from gate_contract.verdicts import check_verdict, signing_key_id
from gate_contract.wire import MATCHING_SERVICE, pb, pb_grpc

CHUNK_BYTES = 64 * 1024
MAX_PENDING_BINDINGS = 64  # sealed captures not yet verified (one at a time in practice)
CANCEL_POLL_S = 0.01  # how often a cancellable verify looks at its ``cancelled`` callback

# Statuses that say the service (or the path to it) is in trouble, not the request.
TRANSPORT_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
# Of those, the ones worth retrying an idempotent call for.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})

# Reconnect quickly after the service comes back (gRPC's default backoff grows to 120 s).
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),  # retries are ours, and only for idempotent calls
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)


# What each gRPC status means for the gate (anything else: the service refused).
FAILURES = {
    grpc.StatusCode.UNAVAILABLE: MatchingFailure.UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: MatchingFailure.TIMED_OUT,
    grpc.StatusCode.RESOURCE_EXHAUSTED: MatchingFailure.OVERLOADED,
    grpc.StatusCode.NOT_FOUND: MatchingFailure.UNKNOWN_SESSION,
    grpc.StatusCode.OUT_OF_RANGE: MatchingFailure.CLOCK_OFF,
    grpc.StatusCode.INTERNAL: MatchingFailure.FAILED,
    grpc.StatusCode.UNKNOWN: MatchingFailure.FAILED,
}


def status_code(exc: grpc.RpcError) -> grpc.StatusCode:
    code = exc.code() if hasattr(exc, "code") else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def unavailable(message: str, code: grpc.StatusCode) -> MatchingUnavailable:
    """The domain error for a failed call with gRPC status ``code``."""
    return MatchingUnavailable(message, FAILURES.get(code, MatchingFailure.REFUSED), code.name)


log = logging.getLogger("gate.matching")


class MatchingClient:
    def __init__(
        self,
        target: str,
        pki: PkiLayout,
        device_id: str,
        *,
        deadline_s: float = 3.0,
        breaker: CircuitBreaker | None = None,
        retries: int = 2,
        backoff_s: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.ca_cert.read_bytes(),
            private_key=pki.device_key.read_bytes(),
            certificate_chain=pki.device_cert.read_bytes(),
        )
        self._channel = grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.MatchingStub(self._channel)
        self._health = _health_stub(self._channel)
        self.device_id = device_id
        self.sealing_key = load_sealing_public(pki.sealing_public)
        self._sealing_kid = key_id(self.sealing_key)
        self._signing_key = load_signing_public(pki.signing_public)
        self._signing_kid = signing_key_id(self._signing_key)
        self._keys_mismatch = ""  # why the pinned keys no longer fit the service, if so
        self._deadline = deadline_s
        self.breaker = breaker or CircuitBreaker()
        self._retries = retries
        self._backoff = backoff_s
        self._sleep = sleep
        self.session_id = ""
        self._flight: Flight | None = None
        # capture id -> the session its payload was sealed to (a session reopened between
        # the sealing and the verify must not make the header name another one)
        self._sealed_to: dict[str, str] = {}
        self._sealed_lock = threading.Lock()

    # --- call plumbing --------------------------------------------------------------

    def _call(
        self,
        name: str,
        fn: Callable[[float], object],
        *,
        idempotent: bool,
        behind_breaker: bool = True,
    ):
        """Run ``fn(timeout)`` behind the breaker; retry only if ``idempotent``. A call
        not ``behind_breaker`` goes ahead whatever the breaker's state; only its success
        is told to the breaker."""
        if not behind_breaker:
            result = self._attempts(name, fn, idempotent=idempotent, count_failures=False)
            self.breaker.success()
            return result
        probe = self.breaker.acquire()
        if probe and not self._probe_health():
            self.breaker.failure()
            raise CircuitOpen(f"{name}: matching service still unavailable (health probe failed)")
        try:
            result = self._attempts(name, fn, idempotent=idempotent, count_failures=True)
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.success()
        return result

    def _attempts(
        self, name: str, fn: Callable[[float], object], *, idempotent: bool, count_failures: bool
    ):
        """``fn(timeout)`` within the deadline, retried if ``idempotent``; transport
        failures count against the breaker if ``count_failures``."""
        deadline = time.monotonic() + self._deadline
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise _DeadlineSpent()
                result = fn(remaining)
            except _DeadlineSpent:
                if count_failures:
                    self.breaker.failure()
                raise unavailable(
                    f"{name} failed: DEADLINE_EXCEEDED", grpc.StatusCode.DEADLINE_EXCEEDED
                ) from None
            except grpc.RpcError as exc:
                code = status_code(exc)
                retry_in = self._backoff * (2**attempt) * (0.5 + random.random() / 2)
                if (
                    idempotent
                    and code in RETRYABLE
                    and attempt < self._retries
                    and time.monotonic() + retry_in < deadline
                ):
                    attempt += 1
                    self._sleep(retry_in)
                    continue
                if code not in TRANSPORT_FAILURES:
                    self.breaker.success()  # the service answered: it is up
                elif count_failures:
                    self.breaker.failure()
                details = exc.details() if hasattr(exc, "details") else ""
                raise unavailable(f"{name} failed: {code.name}: {details}", code) from exc
            return result

    def _probe_health(self) -> bool:
        from grpc_health.v1 import health_pb2

        try:
            response = self._health.Check(
                health_pb2.HealthCheckRequest(service=MATCHING_SERVICE),
                timeout=min(self._deadline, 1.0),
                wait_for_ready=True,
            )
        except grpc.RpcError:
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

    # --- the contract ---------------------------------------------------------------

    def health(self) -> bool:
        """Is the matching service serving? (Retried; does not trip the breaker.)"""
        from grpc_health.v1 import health_pb2

        for attempt in range(self._retries + 1):
            try:
                response = self._health.Check(
                    health_pb2.HealthCheckRequest(service=MATCHING_SERVICE), timeout=self._deadline
                )
                return response.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError as exc:
                if status_code(exc) not in RETRYABLE or attempt == self._retries:
                    return False
                self._sleep(self._backoff * (2**attempt))
        return False

    def open_session(self, flight: Flight, *, behind_breaker: bool = True) -> Session:
        """Open this unit's session for ``flight``. ``behind_breaker=False``: a background
        caller with its own backoff (the session keeper), not stopped by an open breaker."""
        request = pb.OpenSessionRequest(
            device_id=self.device_id,
            flight=pb.Flight(
                carrier=flight.carrier,
                flight_number=flight.flight_number,
                date=flight.date,
                departure_airport=flight.departure_airport,
                gate=flight.gate,
            ),
        )
        response = self._call(
            "open session",
            lambda timeout: self._stub.OpenSession(request, timeout=timeout, wait_for_ready=True),
            idempotent=True,
            behind_breaker=behind_breaker,
        )
        self.session_id = response.session_id
        self._flight = flight
        return Session(response.session_id, response.gallery_size)

    def binding(self, capture_id: str, captured_at_ms: int, boarding_pass: str = "") -> SealBinding:
        """What a capture must be sealed to for :meth:`verify` (this device and session)."""
        session_id = self.session_id
        with self._sealed_lock:
            if len(self._sealed_to) >= MAX_PENDING_BINDINGS:  # bindings never verified
                self._sealed_to.clear()
            self._sealed_to[capture_id] = session_id
        return SealBinding(capture_id, self.device_id, session_id, captured_at_ms, boarding_pass)

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on a gRPC thread) whenever an established connection to the
        service is lost: a restarted service has forgotten this unit's session, so the
        session keeper reopens it before the next traveller rather than after."""
        connected = threading.Event()

        def watch(state: grpc.ChannelConnectivity) -> None:
            if state is grpc.ChannelConnectivity.READY:
                connected.set()
            elif connected.is_set():
                connected.clear()
                callback()

        self._channel.subscribe(watch, try_to_connect=False)

    def _chunks(self, header: pb.CaptureHeader, sealed: bytearray) -> Iterator[pb.VerifyChunk]:
        yield pb.VerifyChunk(header=header)
        view = memoryview(sealed)
        for start in range(0, len(sealed), CHUNK_BYTES):
            yield pb.VerifyChunk(sealed_data=bytes(view[start : start + CHUNK_BYTES]))

    def verify(
        self,
        capture_id: str,
        captured_at_ms: int,
        sealed: bytearray,
        boarding_pass: str = "",
        *,
        cancelled: Callable[[], bool] | None = None,
        clock_window: bool = True,
    ) -> Verdict:
        """Send one sealed capture; return its verdict only if it checks out.

        ``clock_window=False`` skips only the freshness check (signature and ids are still
        verified): the self-test uses it to measure the clock skew itself.

        With ``cancelled``, the call runs as a future polled every ``CANCEL_POLL_S``:
        once ``cancelled()`` is true the RPC is cancelled (nothing more is sent) and
        ``VerifyCancelled`` is raised. A cancellation says nothing about the service,
        so it does not count against the circuit breaker.
        """
        with self._sealed_lock:
            session_id = self._sealed_to.pop(capture_id, self.session_id)
        header = pb.CaptureHeader(
            session_id=session_id,
            capture_id=capture_id,
            device_id=self.device_id,
            captured_at_ms=captured_at_ms,
            sealed_size=len(sealed),
            sealing_key_id=self._sealing_kid,
            boarding_pass=boarding_pass,
        )
        if cancelled is None:

            def call(timeout: float):
                return self._stub.Verify(self._chunks(header, sealed), timeout=timeout)
        else:

            def call(timeout: float):
                if cancelled():
                    raise VerifyCancelled("verify cancelled before it was sent")
                future = self._stub.Verify.future(self._chunks(header, sealed), timeout=timeout)
                while not future.done():
                    if cancelled():
                        future.cancel()
                        raise VerifyCancelled("verify cancelled while waiting for the verdict")
                    try:
                        return future.result(timeout=CANCEL_POLL_S)
                    except grpc.FutureTimeoutError:
                        continue
                return future.result()

        try:
            verdict = self._call("verify", call, idempotent=False)
        except MatchingUnavailable as exc:
            if exc.failure is MatchingFailure.UNKNOWN_SESSION and self._flight is not None:
                # The service restarted and forgot our session: this capture is lost
                # (never re-sent), but the next traveller gets a fresh session.
                with contextlib.suppress(MatchingUnavailable):
                    self.open_session(self._flight)
            if exc.status == "FAILED_PRECONDITION":  # the one refusal: unknown sealing key
                self._pinned_keys_stale("it cannot open captures sealed to the pinned key")
            raise
        try:
            check_verdict(
                verdict,
                self._signing_key,
                capture_id=capture_id,
                device_id=self.device_id,
                now_ms=now_ms() if clock_window else verdict.issued_at_ms,
            )
        except VerdictRejected as exc:
            # a forged or replayed verdict, or this unit's clock off by more than the window
            log.warning("verdict for capture %s refused: %s; the gate stays shut", capture_id, exc)
            if verdict.signing_key_id != self._signing_kid:
                self._pinned_keys_stale("it signs verdicts with a key this unit did not pin")
            raise
        if self._keys_mismatch:
            log.info("the matching service's keys match the pinned ones again")
            self._keys_mismatch = ""
        return Verdict(
            verdict.capture_id,
            verdict.device_id,
            _decision(verdict.decision),
            verdict.traveller_token,
            verdict.issued_at_ms,
        )

    def _pinned_keys_stale(self, why: str) -> None:
        """Say once (at ERROR, so the status shows it) that only a re-enrolment helps."""
        if self._keys_mismatch == why:
            return
        self._keys_mismatch = why
        log.error(
            "the matching service was re-keyed: %s; every traveller is referred until this"
            " unit is re-enrolled (`gatectl provision --rotate` with a new token)",
            why,
        )

    def report_purge(self, record: PurgeRecord) -> bool:
        """Tell the service this capture is purged; False if it could not be told now."""
        receipt = pb.PurgeReceipt(
            device_id=record.device_id,
            capture_id=record.capture_id,
            sealed_sha256=record.sealed_sha256,
            purged_at_ms=record.purged_at_ms,
            reason=record.reason,
        )
        try:
            return self._call(
                "report purge",
                lambda timeout: self._stub.ReportPurge(receipt, timeout=timeout).recorded,
                idempotent=True,
            )
        except MatchingUnavailable:
            return False

    def close(self) -> None:
        self._channel.close()


class _DeadlineSpent(Exception):
    pass


def _decision(value: int) -> Decision:
    """The domain decision for a wire value; an unknown one counts as unspecified."""
    try:
        return Decision(value)
    except ValueError:
        return Decision.UNSPECIFIED


def _health_stub(channel: grpc.Channel):
    from grpc_health.v1 import health_pb2_grpc

    return health_pb2_grpc.HealthStub(channel)


# --- enrollment -------------------------------------------------------------------------


__all__ = [
    "CANCEL_POLL_S",
    "CHANNEL_OPTIONS",
    "CHUNK_BYTES",
    "FAILURES",
    "MAX_PENDING_BINDINGS",
    "RETRYABLE",
    "TRANSPORT_FAILURES",
    "MatchingClient",
    "status_code",
    "unavailable",
]
