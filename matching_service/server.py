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
unknown session                  NOT_FOUND              unknown_session
session of another device        PERMISSION_DENIED      session_of_other_device
stream without header first      INVALID_ARGUMENT       header_missing
sealed to an unknown key id      FAILED_PRECONDITION    unknown_sealing_key
capture time outside window      OUT_OF_RANGE           capture_time_outside_window
capture id seen before           ALREADY_EXISTS         replayed_capture
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

import functools
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import cv2
import grpc
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gate_contract.errors import SealError
from gate_contract.keys import PkiLayout, load_private
from gate_contract.sealing import key_id, open_sealed
from gate_contract.verdicts import signing_key_id, verdict_message
from gate_contract.wire import MATCHING_SERVICE, pb, pb_grpc
from matching_service.audit import AuditLog, VerifyRecord
from matching_service.encoder_pool import EncoderPool
from matching_service.errors import NoFaceFound, Rejected, UndecodableImage
from matching_service.gallery import Gallery, flight_key
from matching_service.passes import BoardingPassError, passenger_from_bcbp
from matching_service.recognizer import FaceEncoder
from matching_service.revocation import RevocationList

log = logging.getLogger("gate.matcher")

MAX_SEALED_BYTES = 8 * 1024 * 1024
CHUNK_LIMIT = 1024 * 1024
MAX_CHUNKS = 1024
SESSION_TTL_MS = 24 * 3600 * 1000
RECENT_RECEIPTS = 1000
CAPTURE_WINDOW_MS = 60_000
REPLAY_MEMORY = 100_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def default_workers() -> int:
    """Worker threads for the gRPC pool: enough for many gates on this machine."""
    return max(4, 4 * (os.cpu_count() or 1))


def server_threads(service: MatchingService, workers: int | None = None) -> int:
    """gRPC threads for ``service``: never fewer than its encoder processes."""
    threads = workers or default_workers()
    pool = service.encoder_pool
    return max(threads, pool.workers) if pool is not None else threads


@dataclass(frozen=True)
class Session:
    device_id: str
    flight: str
    opened_at_ms: int = 0


@dataclass(frozen=True)
class Peer:
    device_id: str
    serial: int


def _handler(method: str):
    """Turn ``Rejected`` and unexpected errors into an audited gRPC status."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(self: MatchingService, request, context: grpc.ServicerContext):
            try:
                return fn(self, request, context)
            except Rejected as exc:
                self._audit_rejection(method, exc)
                context.abort(exc.code, exc.message)
            except Exception as exc:  # nothing a caller sends may take the service down
                log.exception("%s failed", method)
                self.audit.security(
                    "internal_error",
                    grpc.StatusCode.INTERNAL.name,
                    method=method,
                    detail=type(exc).__name__,
                    at_ms=self._clock(),
                )
                context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return inner

    return wrap


class MatchingService(pb_grpc.MatchingServicer):
    """The ``gate.v1.Matching`` servicer.

    Live captures are encoded by ``pool`` (an ``EncoderPool`` of worker processes, so
    concurrent gates encode in parallel) when one is given, else in this process by
    ``encoder`` (one capture at a time: dlib holds the GIL). The pool is the caller's to
    close.
    """

    def __init__(
        self,
        gallery: Gallery,
        encoder: FaceEncoder | None,
        sealing_key: X25519PrivateKey,
        signing_key: Ed25519PrivateKey,
        *,
        audit: AuditLog | None = None,
        revocations: RevocationList | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        pool: EncoderPool | None = None,
    ) -> None:
        self._gallery = gallery
        self._encoder = encoder
        self.encoder_pool = pool
        self._sealing_key = sealing_key
        self._sealing_kid = key_id(sealing_key.public_key())
        self._signing_key = signing_key
        self._signing_kid = signing_key_id(signing_key.public_key())
        self._sessions: dict[str, Session] = {}
        self._seen_captures: OrderedDict[str, int] = OrderedDict()
        self._certs: OrderedDict[bytes, x509.Certificate] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock_ms
        self.audit = audit or AuditLog()
        self.revocations = revocations or RevocationList()
        # Recent receipts for inspection; the audit table is the record (bounded memory).
        self.purge_receipts: deque[pb.PurgeReceipt] = deque(maxlen=RECENT_RECEIPTS)

    @property
    def sealing_key_id(self) -> str:
        return self._sealing_kid

    @property
    def signing_key_id(self) -> str:
        return self._signing_kid

    def _audit_rejection(self, method: str, exc: Rejected) -> None:
        log.warning(
            "%s refused (%s, %s): device %r capture %r: %s",
            method,
            exc.event,
            exc.code.name,
            exc.device_id,
            exc.capture_id,
            exc.message,
        )
        self.audit.security(
            exc.event,
            exc.code.name,
            method=method,
            device_id=exc.device_id,
            capture_id=exc.capture_id,
            detail=exc.message,
            at_ms=self._clock(),
        )

    # --- who is calling -------------------------------------------------------------

    def _certificate(self, pem: bytes) -> x509.Certificate:
        with self._lock:
            cert = self._certs.get(pem)
            if cert is not None:
                self._certs.move_to_end(pem)
                return cert
        cert = x509.load_pem_x509_certificate(pem)
        with self._lock:
            self._certs[pem] = cert
            if len(self._certs) > 1024:
                self._certs.popitem(last=False)
        return cert

    def _peer(self, context: grpc.ServicerContext) -> Peer:
        """The calling device from its TLS certificate: named, in date, not revoked."""
        auth = context.auth_context()
        pems = auth.get("x509_pem_cert") or []
        if not pems:
            raise Rejected(
                grpc.StatusCode.UNAUTHENTICATED, "unknown_device", "no client certificate"
            )
        try:
            cert = self._certificate(pems[0])
            names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        except ValueError as exc:
            raise Rejected(
                grpc.StatusCode.UNAUTHENTICATED, "unknown_device", f"unreadable certificate: {exc}"
            ) from exc
        device = str(names[0].value) if names else ""
        if not device:
            raise Rejected(
                grpc.StatusCode.UNAUTHENTICATED,
                "unknown_device",
                "certificate names no device",
            )
        now = self._clock()
        not_before = int(cert.not_valid_before_utc.timestamp() * 1000)
        not_after = int(cert.not_valid_after_utc.timestamp() * 1000)
        if not not_before <= now <= not_after:
            raise Rejected(
                grpc.StatusCode.UNAUTHENTICATED,
                "certificate_expired",
                "device certificate is not valid now",
                device_id=device,
            )
        why = self.revocations.is_revoked(cert.serial_number, device)
        if why is not None:
            raise Rejected(
                grpc.StatusCode.UNAUTHENTICATED,
                "certificate_revoked",
                f"device certificate revoked (by {why})",
                device_id=device,
            )
        return Peer(device, cert.serial_number)

    @staticmethod
    def _same_device(peer: Peer, claimed: str, capture_id: str = "") -> None:
        if claimed != peer.device_id:
            raise Rejected(
                grpc.StatusCode.PERMISSION_DENIED,
                "device_mismatch",
                "device id does not match certificate",
                device_id=peer.device_id,
                capture_id=capture_id,
            )

    # --- OpenSession ----------------------------------------------------------------

    @_handler("OpenSession")
    def OpenSession(self, request: pb.OpenSessionRequest, context: grpc.ServicerContext):
        peer = self._peer(context)
        self._same_device(peer, request.device_id)
        f = request.flight
        if not (f.carrier and f.flight_number and f.date and f.departure_airport):
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_request",
                "flight needs carrier, number, date, airport",
                device_id=peer.device_id,
            )
        flight = flight_key(f.carrier, f.flight_number, f.date, f.departure_airport)
        session_id = uuid.uuid4().hex
        now = self._clock()
        with self._lock:
            # A gate opens a session per flight; old ones are dropped so memory stays flat.
            stale = [k for k, v in self._sessions.items() if now - v.opened_at_ms > SESSION_TTL_MS]
            for key in stale:
                del self._sessions[key]
            self._sessions[session_id] = Session(peer.device_id, flight, now)
        size = self._gallery.size(flight)
        log.info(
            "session %s: device %s flight %s gallery %d", session_id, peer.device_id, flight, size
        )
        return pb.OpenSessionResponse(
            session_id=session_id, gallery_ready=size > 0, gallery_size=size
        )

    # --- Verify ---------------------------------------------------------------------

    @_handler("Verify")
    def Verify(self, request_iterator, context: grpc.ServicerContext):
        started = time.perf_counter()
        peer = self._peer(context)
        header, session = self._admit(peer, request_iterator)
        sealed = self._receive(header, request_iterator)
        try:
            return self._decide(header, session, sealed, started)
        finally:
            sealed[:] = bytes(len(sealed))

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
        self._same_device(peer, header.device_id, capture)
        with self._lock:
            session = self._sessions.get(header.session_id)
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
        if abs(now - header.captured_at_ms) > CAPTURE_WINDOW_MS:
            raise Rejected(
                grpc.StatusCode.OUT_OF_RANGE,
                "capture_time_outside_window",
                "capture time outside the window",
                device_id=peer.device_id,
                capture_id=capture,
            )
        with self._lock:
            while self._seen_captures:  # ids older than the window cannot come back anyway
                oldest, seen_at = next(iter(self._seen_captures.items()))
                if now - seen_at <= 2 * CAPTURE_WINDOW_MS:
                    break
                del self._seen_captures[oldest]
            if capture in self._seen_captures:
                raise Rejected(
                    grpc.StatusCode.ALREADY_EXISTS,
                    "replayed_capture",
                    "capture id already used",
                    device_id=peer.device_id,
                    capture_id=capture,
                )
            if len(self._seen_captures) >= REPLAY_MEMORY:
                raise Rejected(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "replay_memory_full",
                    "too many captures in the window",
                    device_id=peer.device_id,
                    capture_id=capture,
                )
            self._seen_captures[capture] = now
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
        self, header: pb.CaptureHeader, session: Session, sealed: bytearray, started: float
    ) -> pb.Verdict:
        try:
            plain = open_sealed(sealed, self._sealing_key, header.capture_id, header.device_id)
        except SealError as exc:
            raise Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "tampered_payload",
                str(exc),
                device_id=header.device_id,
                capture_id=header.capture_id,
            ) from exc
        try:
            decision, token, nearest = self._match(header, session, plain)
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

    def _match(self, header: pb.CaptureHeader, session: Session, plain: bytearray):
        flight = session.flight
        if self._gallery.size(flight) == 0:
            return pb.GALLERY_NOT_READY, "", None
        try:
            template = self._encode(plain)
        except (NoFaceFound, UndecodableImage):
            return pb.IMAGE_UNUSABLE, "", None
        try:
            nearest = self._gallery.nearest(flight, template)
            holder = None
            if header.boarding_pass:
                passenger = passenger_from_bcbp(header.boarding_pass)
                holder = self._gallery.passenger_match(flight, template, passenger)
        finally:
            template.fill(0)  # the live template is not kept either
        threshold = self._gallery.threshold
        if header.boarding_pass:
            # Pass-then-face: 1:1 against the pass holder; 1:N only to tell a stranger
            # (nobody on the flight) from another passenger (someone else's pass).
            if holder is not None and holder.distance <= threshold:
                self._gallery.record_verification(flight, holder.traveller_id, self._clock())
                return pb.MATCH, holder.token, holder
            if nearest is not None and nearest.distance <= threshold:
                return pb.NO_MATCH, "", nearest
            return pb.NOT_ON_FLIGHT, "", nearest
        if nearest is None or nearest.distance > threshold:
            return pb.NOT_ON_FLIGHT, "", nearest
        self._gallery.record_verification(flight, nearest.traveller_id, self._clock())
        return pb.MATCH, nearest.token, nearest

    def _encode(self, plain: bytearray) -> np.ndarray:
        """The live capture's template; no decoded pixels outlive this call."""
        if self.encoder_pool is not None:
            # Decoded and zeroized in a worker; ``plain`` stays ours to zeroize.
            return self.encoder_pool.encode_jpeg(plain)
        image = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise UndecodableImage("capture is not a decodable image")
        try:
            return self._encoder.encode(image)
        finally:
            image.fill(0)

    # --- ReportPurge ----------------------------------------------------------------

    @_handler("ReportPurge")
    def ReportPurge(self, request: pb.PurgeReceipt, context: grpc.ServicerContext):
        peer = self._peer(context)
        self._same_device(peer, request.device_id, request.capture_id)
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


def add_health(server: grpc.Server, services: tuple[str, ...]) -> health.HealthServicer:
    """Standard ``grpc.health.v1`` on ``server``: overall ("") and per service, SERVING."""
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", *services):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer


def start_server(
    service: MatchingService,
    pki: PkiLayout,
    address: str = "127.0.0.1:0",
    workers: int | None = None,
) -> tuple[grpc.Server, int]:
    """Start a mutual-TLS gRPC server; returns it and the port it bound.

    The server also answers ``grpc.health.v1`` (kept at ``service.health``). Its thread
    pool has ``workers`` threads (default: ``default_workers()``), and never fewer than
    the service's encoder processes, so every worker can be busy at once.
    """
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=server_threads(service, workers)),
        options=[
            ("grpc.max_receive_message_length", CHUNK_LIMIT),
            ("grpc.so_reuseport", 0),
        ],
    )
    pb_grpc.add_MatchingServicer_to_server(service, server)
    service.health = add_health(server, (MATCHING_SERVICE,))
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind the matching service to {address}")
    server.start()
    return server, port


def service_from_pki(
    pki: PkiLayout,
    gallery: Gallery,
    encoder: FaceEncoder | None,
    pool: EncoderPool | None = None,
    **options,
) -> MatchingService:
    """A service with ``pki``'s payload and signing keys; ``options`` go to the service.

    With ``pool``, live captures are encoded in its worker processes (the caller closes
    it); without, in this process by ``encoder``.
    """
    return MatchingService(
        gallery,
        encoder,
        load_private(pki.sealing_key),
        load_private(pki.signing_key),
        pool=pool,
        **options,
    )
