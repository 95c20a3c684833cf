"""The reference matching service: opens sealed captures, matches 1:N, signs verdicts.

It accepts only mutually authenticated TLS clients whose certificate names the device
they speak for, decrypts each capture in memory, keeps no pixels after answering, and
signs every verdict so the appliance can tell it from a forgery.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent import futures
from dataclasses import dataclass

import cv2
import grpc
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from gate.v1 import matching_pb2 as pb
from gate.v1 import matching_pb2_grpc as pb_grpc

from appliance.contract import signing_key_id, verdict_message
from appliance.pki import PkiLayout, load_private
from appliance.sealing import SealError, key_id, open_sealed
from matching_service.gallery import Gallery, flight_key
from matching_service.recognizer import FaceEncoder, NoFaceFound

log = logging.getLogger("gate.matcher")

MAX_SEALED_BYTES = 8 * 1024 * 1024
CHUNK_LIMIT = 1024 * 1024
CAPTURE_WINDOW_MS = 60_000
REPLAY_MEMORY = 10_000


@dataclass(frozen=True)
class Session:
    device_id: str
    flight: str


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _peer_device(context: grpc.ServicerContext) -> str:
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else ""


class MatchingService(pb_grpc.MatchingServicer):
    def __init__(
        self,
        gallery: Gallery,
        encoder: FaceEncoder,
        sealing_key: X25519PrivateKey,
        signing_key: Ed25519PrivateKey,
    ) -> None:
        self._gallery = gallery
        self._encoder = encoder
        self._sealing_key = sealing_key
        self._sealing_kid = key_id(sealing_key.public_key())
        self._signing_key = signing_key
        self._signing_kid = signing_key_id(signing_key.public_key())
        self._sessions: dict[str, Session] = {}
        self._seen_captures: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.purge_receipts: list[pb.PurgeReceipt] = []

    def OpenSession(self, request: pb.OpenSessionRequest, context: grpc.ServicerContext):
        device = _peer_device(context)
        if request.device_id != device:
            log.warning("session refused: certificate %r speaks for %r", device, request.device_id)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "device id does not match certificate")
        f = request.flight
        if not (f.carrier and f.flight_number and f.date and f.departure_airport):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "flight needs carrier, number, date, airport"
            )
        flight = flight_key(f.carrier, f.flight_number, f.date, f.departure_airport)
        session_id = uuid.uuid4().hex
        with self._lock:
            self._sessions[session_id] = Session(device, flight)
        size = self._gallery.size(flight)
        log.info("session %s: device %s flight %s gallery %d", session_id, device, flight, size)
        return pb.OpenSessionResponse(
            session_id=session_id, gallery_ready=size > 0, gallery_size=size
        )

    def Verify(self, request_iterator, context: grpc.ServicerContext):
        header, sealed = self._receive(request_iterator, context)
        try:
            return self._decide(header, sealed, context)
        finally:
            sealed[:] = bytes(len(sealed))

    def _receive(self, chunks, context) -> tuple[pb.CaptureHeader, bytearray]:
        first = next(chunks, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a capture must start with its header")
        header = first.header
        device = _peer_device(context)
        with self._lock:
            session = self._sessions.get(header.session_id)
        if session is None or session.device_id != device or header.device_id != device:
            log.warning("capture %s refused: unknown session or device", header.capture_id)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "unknown session for this device")
        if not 0 < header.sealed_size <= MAX_SEALED_BYTES:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"sealed_size must be 1..{MAX_SEALED_BYTES}"
            )
        if header.sealing_key_id != self._sealing_kid:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "capture sealed to an unknown key")
        if abs(_now_ms() - header.captured_at_ms) > CAPTURE_WINDOW_MS:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "capture time outside the window")
        with self._lock:
            if header.capture_id in self._seen_captures:
                log.warning("replayed capture %s from %s", header.capture_id, device)
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "capture id already used")
            self._seen_captures[header.capture_id] = None
            if len(self._seen_captures) > REPLAY_MEMORY:
                self._seen_captures.popitem(last=False)
        sealed = bytearray(header.sealed_size)
        filled = 0
        for chunk in chunks:
            data = chunk.sealed_data
            if chunk.WhichOneof("part") != "sealed_data" or filled + len(data) > len(sealed):
                sealed[:] = bytes(len(sealed))
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unexpected or oversized chunk")
            sealed[filled : filled + len(data)] = data
            filled += len(data)
        if filled != len(sealed):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "capture ended before sealed_size bytes"
            )
        return header, sealed

    def _decide(self, header: pb.CaptureHeader, sealed: bytearray, context) -> pb.Verdict:
        try:
            plain = open_sealed(sealed, self._sealing_key, header.capture_id, header.device_id)
        except SealError as exc:
            log.warning("capture %s from %s rejected: %s", header.capture_id, header.device_id, exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            decision, token = self._match(header, plain)
        finally:
            plain[:] = bytes(len(plain))
        verdict = pb.Verdict(
            capture_id=header.capture_id,
            device_id=header.device_id,
            decision=decision,
            traveller_token=token,
            issued_at_ms=_now_ms(),
            signing_key_id=self._signing_kid,
        )
        verdict.signature = self._signing_key.sign(verdict_message(verdict))
        log.info("capture %s: %s", header.capture_id, pb.Decision.Name(decision))
        return verdict

    def _match(self, header: pb.CaptureHeader, plain: bytearray) -> tuple[int, str]:
        with self._lock:
            flight = self._sessions[header.session_id].flight
        if self._gallery.size(flight) == 0:
            return pb.GALLERY_NOT_READY, ""
        image = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return pb.IMAGE_UNUSABLE, ""
        try:
            template = self._encoder.encode(image)
        except NoFaceFound:
            return pb.IMAGE_UNUSABLE, ""
        finally:
            image.fill(0)
        match = self._gallery.search(flight, template)
        if match is None:
            return pb.NOT_ON_FLIGHT, ""
        return pb.MATCH, match.token

    def ReportPurge(self, request: pb.PurgeReceipt, context: grpc.ServicerContext):
        if request.device_id != _peer_device(context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "device id does not match certificate")
        with self._lock:
            self.purge_receipts.append(request)
        log.info("purge receipt: device %s capture %s", request.device_id, request.capture_id)
        return pb.PurgeAck(recorded=True)


def start_server(
    service: MatchingService, pki: PkiLayout, address: str = "127.0.0.1:0", workers: int = 4
) -> tuple[grpc.Server, int]:
    """Start a mutual-TLS gRPC server; returns it and the port it bound."""
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[("grpc.max_receive_message_length", CHUNK_LIMIT)],
    )
    pb_grpc.add_MatchingServicer_to_server(service, server)
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind the matching service to {address}")
    server.start()
    return server, port


def service_from_pki(pki: PkiLayout, gallery: Gallery, encoder: FaceEncoder) -> MatchingService:
    return MatchingService(
        gallery, encoder, load_private(pki.sealing_key), load_private(pki.signing_key)
    )
