"""The reference matching service: opens sealed captures, matches 1:N, signs verdicts.

It accepts only mutually authenticated TLS clients whose certificate names the device
they speak for, decrypts each capture in memory, keeps no pixels after answering, and
signs every verdict so the appliance can tell it from a forgery.

Every refusal raises ``Rejected`` inside a handler; one wrapper turns it into a gRPC
status and an audit entry, and turns any unexpected exception into ``INTERNAL`` (also
audited), so no input can take the service down. Status per refusal:

==============================  =====================  ==============================
refusal                          gRPC status            audit event
==============================  =====================  ==============================
no device name in certificate    UNAUTHENTICATED        unknown_device
certificate expired / not yet    UNAUTHENTICATED        certificate_expired
certificate revoked              UNAUTHENTICATED        certificate_revoked
ids speak for another device     PERMISSION_DENIED      device_mismatch
flight outside device's scope    PERMISSION_DENIED      flight_not_authorised
unknown session                  NOT_FOUND              unknown_session
session of another device        PERMISSION_DENIED      session_of_other_device
stream without header first      INVALID_ARGUMENT       header_missing
sealed to an unknown key id      FAILED_PRECONDITION    unknown_sealing_key
capture time outside window      OUT_OF_RANGE           capture_time_outside_window
capture id seen before           ALREADY_EXISTS         replayed_capture
replay memory full               RESOURCE_EXHAUSTED     replay_memory_full
more streams than a device may   RESOURCE_EXHAUSTED     too_many_streams
header or chunks too late        DEADLINE_EXCEEDED      capture_too_slow
caller gone (deadline, opt-out)  CANCELLED              client_cancelled (INFO)
malformed message / request      INVALID_ARGUMENT       malformed_message, bad_request
declared size / chunk count      RESOURCE_EXHAUSTED     oversize_capture, too_many_chunks
more or fewer bytes than said    INVALID_ARGUMENT       size_mismatch
payload fails authentication     INVALID_ARGUMENT       tampered_payload
unreadable boarding pass         INVALID_ARGUMENT       bad_boarding_pass
==============================  =====================  ==============================

An *expired* certificate is already refused by the TLS handshake of a new connection
(the caller sees ``UNAVAILABLE``; no handler runs, so only gRPC's own log has it). The
check here catches a certificate that expires on a connection that is still open, and
a revocation, which TLS knows nothing about.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gate_contract.clock import now_ms
from gate_contract.errors import BoardingPassError, SealError
from gate_contract.sealing import SealBinding, key_id, open_sealed
from gate_contract.verdicts import signing_key_id, verdict_message
from gate_contract.wire import pb, pb_grpc
from matching_service.audit import AuditLog, VerifyRecord
from matching_service.decision import FlightMatcher
from matching_service.encoder_pool import EncoderPool
from matching_service.errors import CallerGone, Rejected
from matching_service.gallery import Gallery, flight_key
from matching_service.handlers import guarded
from matching_service.limits import BurstLog, ConcurrencyLimit
from matching_service.passes import passenger_from_bcbp
from matching_service.peers import Peer, PeerAuthenticator, same_device
from matching_service.recognizers import Recognizer
from matching_service.revocation import RevocationList
from matching_service.sessions import ReplayGuard, Session, SessionTable

log = logging.getLogger("gate.matcher")

MAX_SEALED_BYTES = 8 * 1024 * 1024
CHUNK_LIMIT = 1024 * 1024  # one gRPC message at most (a chunk is 64 KiB)
MAX_CHUNKS = 1024
RECENT_RECEIPTS = 1000
MAX_STREAMS_PER_DEVICE = 4  # captures in flight from one gate (it sends one at a time)
RECEIVE_DEADLINE_S = 5.0  # header and payload of one capture must arrive within this


# A cancelled call's request stream may end a moment before the call is seen as gone.
CANCEL_GRACE_S = 0.25


def _ended_short(exc: BaseException) -> bool:
    """Did the request stream end before its header or all its bytes?"""
    return isinstance(exc, Rejected) and exc.event in ("header_missing", "size_mismatch")


def _caller_gone(context: grpc.ServicerContext) -> bool:
    """Has the caller cancelled, or does it within ``CANCEL_GRACE_S``?"""
    gone = threading.Event()
    if not context.add_callback(gone.set):  # already over
        return True
    return gone.wait(CANCEL_GRACE_S) or not context.is_active()


class MatchingService(pb_grpc.MatchingServicer):
    """The ``gate.v1.Matching`` servicer: maps each request to the parts that decide it
    (``peers``, ``sessions``, ``replays``, ``matcher``) and each refusal to a status.

    Live captures are encoded by ``pool`` (see :class:`FlightMatcher`); the pool is the
    caller's to close.
    """

    def __init__(
        self,
        gallery: Gallery,
        encoder: Recognizer | None,
        sealing_key: X25519PrivateKey,
        signing_key: Ed25519PrivateKey,
        *,
        audit: AuditLog | None = None,
        revocations: RevocationList | None = None,
        clock_ms: Callable[[], int] = now_ms,
        pool: EncoderPool | None = None,
        replays: ReplayGuard | None = None,
    ) -> None:
        self.matcher = FlightMatcher(gallery, encoder, pool, lambda: self._clock())
        self.encoder_pool = pool
        self._sealing_key = sealing_key
        self._sealing_kid = key_id(sealing_key.public_key())
        self._signing_key = signing_key
        self._signing_kid = signing_key_id(signing_key.public_key())
        self.sessions = SessionTable()
        self.replays = replays or ReplayGuard()
        self._lock = threading.Lock()
        self._clock = clock_ms
        self.audit = audit or AuditLog()
        self.revocations = revocations or RevocationList()
        self.peers = PeerAuthenticator(self.revocations, lambda: self._clock())
        self.streams = ConcurrencyLimit(MAX_STREAMS_PER_DEVICE)
        self.refusals = BurstLog(log, logging.WARNING)
        self.cancellations = BurstLog(log, logging.INFO)
        # Recent receipts for inspection; the audit table is the record (bounded memory).
        self.purge_receipts: deque[pb.PurgeReceipt] = deque(maxlen=RECENT_RECEIPTS)

    @property
    def sealing_key_id(self) -> str:
        return self._sealing_kid

    @property
    def signing_key_id(self) -> str:
        return self._signing_kid

    def now_ms(self) -> int:
        return self._clock()

    # --- OpenSession ----------------------------------------------------------------

    @guarded("OpenSession")
    def OpenSession(self, request: pb.OpenSessionRequest, context: grpc.ServicerContext):
        peer = self.peers.authenticate(context)
        same_device(peer, request.device_id)
        f = request.flight
        if not (f.carrier and f.flight_number and f.date and f.departure_airport):
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_request",
                "flight needs carrier, number, date, airport",
                device_id=peer.device_id,
            )
        if peer.scope is None or not peer.scope.allows(f.departure_airport, f.gate):
            where = (
                f"{peer.scope.airport} gates {' '.join(peer.scope.gates) or 'any'}"
                if peer.scope
                else "no airport"
            )
            raise Rejected(
                grpc.StatusCode.PERMISSION_DENIED,
                "flight_not_authorised",
                f"device is enrolled for {where}, not flights from"
                f" {f.departure_airport[:8]!r} at gate {f.gate[:8]!r}",
                device_id=peer.device_id,
            )
        flight = flight_key(f.carrier, f.flight_number, f.date, f.departure_airport)
        session_id = self.sessions.open(peer.device_id, flight, self._clock())
        size = self.matcher.gallery.size(flight)
        log.info(
            "session %s: device %s flight %s gallery %d", session_id, peer.device_id, flight, size
        )
        return pb.OpenSessionResponse(
            session_id=session_id, gallery_ready=size > 0, gallery_size=size
        )

    # --- Verify ---------------------------------------------------------------------

    @guarded("Verify", stream=True)
    def Verify(self, request_iterator, context: grpc.ServicerContext):
        started = time.perf_counter()
        peer = self.peers.authenticate(context)
        with self.streams.hold(peer.device_id) as admitted:
            if not admitted:
                raise Rejected(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "too_many_streams",
                    f"more than {MAX_STREAMS_PER_DEVICE} captures in flight from this device",
                    device_id=peer.device_id,
                )
            header, session, sealed = self._receive_in_time(peer, request_iterator, context)
            try:
                return self._decide(header, session, sealed, started, context.is_active)
            finally:
                sealed[:] = bytes(len(sealed))

    def _receive_in_time(
        self, peer: Peer, chunks, context: grpc.ServicerContext
    ) -> tuple[pb.CaptureHeader, Session, bytearray]:
        """Header and payload must all arrive within ``RECEIVE_DEADLINE_S``: a stream that
        sends nothing (or trickles) is cut off instead of holding a worker thread."""
        late = threading.Event()

        def cut_off() -> None:
            late.set()
            context.cancel()

        timer = threading.Timer(RECEIVE_DEADLINE_S, cut_off)
        timer.daemon = True
        timer.start()
        try:
            header, session = self._admit(peer, chunks)
            return header, session, self._receive(header, chunks)
        except (grpc.RpcError, Rejected) as exc:
            # Cut off, the stream either fails or just ends (no header, too few bytes).
            if late.is_set():
                raise Rejected(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "capture_too_slow",
                    f"capture not received within {RECEIVE_DEADLINE_S:g} s",
                    device_id=peer.device_id,
                ) from exc
            if _ended_short(exc) and _caller_gone(context):
                # The caller cancelled (an opt-out, its own deadline): the stream then just
                # ends short of its bytes, which is not a malformed capture.
                raise Rejected(
                    grpc.StatusCode.CANCELLED,
                    "client_cancelled",
                    "the caller cancelled while sending",
                    device_id=peer.device_id,
                ) from exc
            raise
        finally:
            timer.cancel()

    def _admit(self, peer: Peer, chunks) -> tuple[pb.CaptureHeader, Session]:
        """Check the header before reading a single payload byte."""
        first = next(chunks, None)
        if first is None or first.WhichOneof("part") != "header":
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "header_missing",
                "a capture must start with its header",
                device_id=peer.device_id,
            )
        header = first.header
        capture = header.capture_id
        same_device(peer, header.device_id, capture)
        session = self.sessions.get(header.session_id)
        if session is None:
            raise Rejected(
                grpc.StatusCode.NOT_FOUND,
                "unknown_session",
                "unknown session",
                device_id=peer.device_id,
                capture_id=capture,
            )
        if session.device_id != peer.device_id:
            raise Rejected(
                grpc.StatusCode.PERMISSION_DENIED,
                "session_of_other_device",
                "session belongs to another device",
                device_id=peer.device_id,
                capture_id=capture,
            )
        if not capture or len(capture) > 64:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_request",
                "capture id must be 1..64 characters",
                device_id=peer.device_id,
            )
        if header.sealed_size > MAX_SEALED_BYTES:
            raise Rejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "oversize_capture",
                f"sealed_size above {MAX_SEALED_BYTES} bytes",
                device_id=peer.device_id,
                capture_id=capture,
            )
        if header.sealed_size == 0:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "size_mismatch",
                "sealed_size must be positive",
                device_id=peer.device_id,
                capture_id=capture,
            )
        if header.sealing_key_id != self._sealing_kid:
            raise Rejected(
                grpc.StatusCode.FAILED_PRECONDITION,
                "unknown_sealing_key",
                f"capture sealed to unknown key id {header.sealing_key_id[:32]!r}",
                device_id=peer.device_id,
                capture_id=capture,
            )
        now = self._clock()
        if abs(now - header.captured_at_ms) > self.replays.window_ms:
            raise Rejected(
                grpc.StatusCode.OUT_OF_RANGE,
                "capture_time_outside_window",
                "capture time outside the window",
                device_id=peer.device_id,
                capture_id=capture,
            )
        self.replays.admit(capture, peer.device_id, now)
        if header.boarding_pass:
            try:
                passenger_from_bcbp(header.boarding_pass)
            except BoardingPassError as exc:
                raise Rejected(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "bad_boarding_pass",
                    f"boarding pass unreadable: {exc}",
                    device_id=peer.device_id,
                    capture_id=capture,
                ) from exc
        return header, session

    def _receive(self, header: pb.CaptureHeader, chunks) -> bytearray:
        sealed = bytearray(header.sealed_size)
        filled = count = 0
        try:
            for chunk in chunks:
                count += 1
                if count > MAX_CHUNKS:
                    raise Rejected(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "too_many_chunks",
                        f"more than {MAX_CHUNKS} chunks",
                        device_id=header.device_id,
                        capture_id=header.capture_id,
                    )
                data = chunk.sealed_data
                if chunk.WhichOneof("part") != "sealed_data" or filled + len(data) > len(sealed):
                    raise Rejected(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "size_mismatch",
                        "unexpected chunk or more bytes than sealed_size",
                        device_id=header.device_id,
                        capture_id=header.capture_id,
                    )
                sealed[filled : filled + len(data)] = data
                filled += len(data)
            if filled != len(sealed):
                raise Rejected(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "size_mismatch",
                    "capture ended before sealed_size bytes",
                    device_id=header.device_id,
                    capture_id=header.capture_id,
                )
        except BaseException:
            sealed[:] = bytes(len(sealed))
            raise
        return sealed

    def _decide(
        self,
        header: pb.CaptureHeader,
        session: Session,
        sealed: bytearray,
        started: float,
        still_wanted: Callable[[], bool],
    ) -> pb.Verdict:
        try:
            binding = SealBinding(
                header.capture_id,
                header.device_id,
                header.session_id,
                header.captured_at_ms,
                header.boarding_pass,
            )
            plain = open_sealed(sealed, self._sealing_key, binding)
        except SealError as exc:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "tampered_payload",
                str(exc),
                device_id=header.device_id,
                capture_id=header.capture_id,
            ) from exc
        try:
            decision, token, nearest = self.matcher.decide(
                session.flight, plain, header.boarding_pass, still_wanted
            )
        except CallerGone as exc:
            raise Rejected(
                grpc.StatusCode.CANCELLED,
                "client_cancelled",
                str(exc),
                device_id=header.device_id,
                capture_id=header.capture_id,
            ) from exc
        finally:
            plain[:] = bytes(len(plain))
        verdict = pb.Verdict(
            capture_id=header.capture_id,
            device_id=header.device_id,
            decision=decision,
            traveller_token=token,
            issued_at_ms=self._clock(),
            signing_key_id=self._signing_kid,
        )
        verdict.signature = self._signing_key.sign(verdict_message(verdict))
        self.audit.verified(
            VerifyRecord(
                at_ms=verdict.issued_at_ms,
                device_id=header.device_id,
                session_id=header.session_id,
                flight=session.flight,
                capture_id=header.capture_id,
                decision=pb.Decision.Name(decision),
                traveller_token=token,
                nearest_token=nearest.token if nearest else "",
                nearest_distance=nearest.distance if nearest else None,
                pass_checked=bool(header.boarding_pass),
                service_ms=(time.perf_counter() - started) * 1000,
            )
        )
        log.info("capture %s: %s", header.capture_id, pb.Decision.Name(decision))
        return verdict

    # --- ReportPurge ----------------------------------------------------------------

    @guarded("ReportPurge")
    def ReportPurge(self, request: pb.PurgeReceipt, context: grpc.ServicerContext):
        peer = self.peers.authenticate(context)
        same_device(peer, request.device_id, request.capture_id)
        with self._lock:
            self.purge_receipts.append(request)
        self.audit.purge_receipt(
            self._clock(),
            request.device_id,
            request.capture_id[:64],
            request.sealed_sha256[:64],
            request.purged_at_ms,
            request.reason,
        )
        log.info("purge receipt: device %s capture %s", request.device_id, request.capture_id)
        return pb.PurgeAck(recorded=True)


__all__ = [
    "CANCEL_GRACE_S",
    "CHUNK_LIMIT",
    "MAX_CHUNKS",
    "MAX_SEALED_BYTES",
    "MAX_STREAMS_PER_DEVICE",
    "RECEIVE_DEADLINE_S",
    "RECENT_RECEIPTS",
    "MatchingService",
]
