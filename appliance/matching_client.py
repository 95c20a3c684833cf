"""The appliance's side of the matching contract: mTLS channel, sealed upload, checked verdict.

A verdict is returned only after its signature, capture id, device id and time have
been checked (``appliance.contract``); anything else raises ``VerdictRejected`` and
the gate stays shut. Every call has a deadline.

Only idempotent calls are retried (``OpenSession``, ``ReportPurge``, health), with a
short bounded backoff inside the call's deadline; ``Verify`` never is (a capture id is
single use, and a traveller should not wait twice). A circuit breaker counts transport
failures (unreachable, deadline exceeded, overloaded): after ``failure_threshold`` in a
row it opens and every call fails at once with ``MatchingUnavailable`` so the gate
says "see agent" without making the traveller wait. After ``cooldown_s`` it half-opens:
the next call first probes ``grpc.health.v1`` and, if the service is serving, closes
the breaker and goes ahead; otherwise the breaker opens for another cool-down.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from gate.v1 import matching_pb2 as pb
from gate.v1 import matching_pb2_grpc as pb_grpc

from appliance.contract import VerdictRejected, check_verdict, signing_key_id
from appliance.pki import (
    PkiLayout,
    load_sealing_public,
    load_signing_public,
    make_csr,
    write_device_layout,
)
from appliance.sealing import key_id
from appliance.transaction import PurgeRecord, now_ms

CHUNK_BYTES = 64 * 1024
CANCEL_POLL_S = 0.01  # how often a cancellable verify looks at its ``cancelled`` callback
HEALTH_SERVICE = "gate.v1.Matching"

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


class MatchingUnavailable(RuntimeError):
    """The matching service could not be reached or refused the call.

    ``code`` is the gRPC status when there was one, so callers branch on it, not on text.
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class VerifyCancelled(Exception):
    """The caller cancelled a verify (opt-out, link lost, own deadline): no verdict."""


class CircuitOpen(MatchingUnavailable):
    """The circuit breaker is open: the call was not even tried."""


class EnrollmentFailed(RuntimeError):
    """Enrollment was refused or returned material that does not check out."""


@dataclass(frozen=True)
class FlightInfo:
    carrier: str
    flight_number: str
    date: str
    departure_airport: str
    gate: str = ""


class CircuitBreaker:
    """Closed -> (N failures in a row) -> open -> (cool-down) -> half-open -> closed/open.

    ``clock`` is injectable (monotonic seconds) so the states can be tested without
    waiting. In half-open state one caller at a time gets to probe; others fail fast.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._state = self.CLOSED
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                return self.HALF_OPEN
            return self._state

    def acquire(self) -> bool:
        """May a call go ahead? Returns True if this caller must probe first.

        Raises ``CircuitOpen`` while open (or while another caller is probing).
        """
        with self._lock:
            if self._state == self.CLOSED:
                return False
            if self._state == self.OPEN:
                remaining = self.cooldown_s - (self._clock() - self._opened_at)
                if remaining > 0:
                    raise CircuitOpen(
                        f"matching service unavailable (circuit open, retry in {remaining:.1f} s)"
                    )
                self._state = self.HALF_OPEN
            if self._probing:
                raise CircuitOpen("matching service unavailable (circuit half-open, probing)")
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._state = self.CLOSED
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._probing = False
            if self._state == self.HALF_OPEN:
                self._trip()
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._trip()

    def release(self) -> None:
        """A probe ended without telling anything about the service (e.g. bad request)."""
        with self._lock:
            self._probing = False

    def _trip(self) -> None:
        self._state = self.OPEN
        self._opened_at = self._clock()
        self._failures = 0


def _status(exc: grpc.RpcError) -> grpc.StatusCode:
    code = exc.code() if hasattr(exc, "code") else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


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
        self._deadline = deadline_s
        self.breaker = breaker or CircuitBreaker()
        self._retries = retries
        self._backoff = backoff_s
        self._sleep = sleep
        self.session_id = ""
        self._flight: FlightInfo | None = None

    # --- call plumbing --------------------------------------------------------------

    def _call(self, name: str, fn: Callable[[float], object], *, idempotent: bool):
        """Run ``fn(timeout)`` behind the breaker; retry only if ``idempotent``."""
        probe = self.breaker.acquire()
        if probe and not self._probe_health():
            self.breaker.failure()
            raise CircuitOpen(f"{name}: matching service still unavailable (health probe failed)")
        deadline = time.monotonic() + self._deadline
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise _DeadlineSpent()
                result = fn(remaining)
            except _DeadlineSpent:
                self.breaker.failure()
                raise MatchingUnavailable(
                    f"{name} failed: DEADLINE_EXCEEDED", grpc.StatusCode.DEADLINE_EXCEEDED
                ) from None
            except grpc.RpcError as exc:
                code = _status(exc)
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
                if code in TRANSPORT_FAILURES:
                    self.breaker.failure()
                else:
                    self.breaker.success()  # the service answered: it is up
                details = exc.details() if hasattr(exc, "details") else ""
                raise MatchingUnavailable(f"{name} failed: {code.name}: {details}", code) from exc
            except BaseException:
                self.breaker.release()
                raise
            self.breaker.success()
            return result

    def _probe_health(self) -> bool:
        from grpc_health.v1 import health_pb2

        try:
            response = self._health.Check(
                health_pb2.HealthCheckRequest(service=HEALTH_SERVICE),
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
                    health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=self._deadline
                )
                return response.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError as exc:
                if _status(exc) not in RETRYABLE or attempt == self._retries:
                    return False
                self._sleep(self._backoff * (2**attempt))
        return False

    def open_session(self, flight: FlightInfo) -> pb.OpenSessionResponse:
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
        )
        self.session_id = response.session_id
        self._flight = flight
        return response

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
    ) -> pb.Verdict:
        """Send one sealed capture; return its verdict only if it checks out.

        ``clock_window=False`` skips only the freshness check (signature and ids are still
        verified): the self-test uses it to measure the clock skew itself.

        With ``cancelled``, the call runs as a future polled every ``CANCEL_POLL_S``:
        once ``cancelled()`` is true the RPC is cancelled (nothing more is sent) and
        ``VerifyCancelled`` is raised. A cancellation says nothing about the service,
        so it does not count against the circuit breaker.
        """
        header = pb.CaptureHeader(
            session_id=self.session_id,
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
            if exc.code is grpc.StatusCode.NOT_FOUND and self._flight is not None:
                # The service restarted and forgot our session: this capture is lost
                # (never re-sent), but the next traveller gets a fresh session.
                with contextlib.suppress(MatchingUnavailable):
                    self.open_session(self._flight)
            raise
        check_verdict(
            verdict,
            self._signing_key,
            capture_id=capture_id,
            device_id=self.device_id,
            now_ms=now_ms() if clock_window else verdict.issued_at_ms,
        )
        return verdict

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


def _health_stub(channel: grpc.Channel):
    from grpc_health.v1 import health_pb2_grpc

    return health_pb2_grpc.HealthStub(channel)


# --- enrollment -------------------------------------------------------------------------


def enroll(
    target: str,
    bootstrap_ca_pem: bytes,
    token: str,
    device_id: str,
    root: Path,
    *,
    deadline_s: float = 10.0,
) -> PkiLayout:
    """Enroll this unit: new key + CSR, one-time token, write the device PKI under ``root``.

    ``bootstrap_ca_pem`` is the CA the technician provisions with the token; the
    enrollment server's TLS certificate must chain to it, and so must the certificate
    returned. The private key is made here and never leaves the unit.
    """
    key, csr_pem = make_csr(device_id)
    credentials = grpc.ssl_channel_credentials(root_certificates=bootstrap_ca_pem)
    with grpc.secure_channel(target, credentials) as channel:
        stub = pb_grpc.EnrollmentStub(channel)
        try:
            response = stub.Enroll(
                pb.EnrollRequest(enrollment_token=token, device_id=device_id, csr_pem=csr_pem),
                timeout=deadline_s,
            )
        except grpc.RpcError as exc:
            raise EnrollmentFailed(
                f"enrollment refused: {_status(exc).name}: {exc.details()}"
            ) from exc
    _check_enrollment(response, bootstrap_ca_pem, device_id, key)
    return write_device_layout(
        root,
        device_key=key,
        certificate_chain_pem=response.certificate_chain_pem,
        ca_pem=response.ca_certificate_pem,
        sealing_public_pem=response.sealing_public_key_pem,
        signing_public_pem=response.signing_public_key_pem,
    )


def _check_enrollment(response: pb.EnrollResponse, bootstrap_ca_pem: bytes, device_id, key) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    try:
        ca = x509.load_pem_x509_certificate(response.ca_certificate_pem)
        pinned = x509.load_pem_x509_certificate(bootstrap_ca_pem)
        chain = x509.load_pem_x509_certificates(response.certificate_chain_pem)
        sealing = serialization.load_pem_public_key(response.sealing_public_key_pem)
        signing = serialization.load_pem_public_key(response.signing_public_key_pem)
    except ValueError as exc:
        raise EnrollmentFailed(f"enrollment answer unreadable: {exc}") from exc
    if ca != pinned:
        raise EnrollmentFailed("enrollment answer names a CA other than the one provisioned")
    if not chain:
        raise EnrollmentFailed("enrollment answer holds no certificate")
    leaf = chain[0]
    try:
        # Every link of the chain, up to the provisioned CA itself.
        for cert, issuer in zip(chain, [*chain[1:], ca], strict=True):
            cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise EnrollmentFailed(f"returned certificate does not chain to the CA: {exc}") from exc
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != device_id:
        raise EnrollmentFailed("returned certificate names another device")
    if not isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) or (
        leaf.public_key().public_numbers() != key.public_key().public_numbers()
    ):
        raise EnrollmentFailed("returned certificate is not for this unit's key")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    if not isinstance(sealing, X25519PublicKey) or key_id(sealing) != response.sealing_key_id:
        raise EnrollmentFailed("sealing key does not match its key id")
    if (
        not isinstance(signing, Ed25519PublicKey)
        or signing_key_id(signing) != response.signing_key_id
    ):
        raise EnrollmentFailed("verdict-signing key does not match its key id")


__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "EnrollmentFailed",
    "FlightInfo",
    "MatchingClient",
    "MatchingUnavailable",
    "VerdictRejected",
    "VerifyCancelled",
    "enroll",
]
