"""Device enrollment: a one-time token and a CSR buy a device certificate and the keys.

Design: enrollment runs on its **own port with server-only TLS**. A new unit has no
client certificate yet, and gRPC Python offers no "request but do not require" client
authentication, so the matching port stays strictly mutual TLS (nothing there is
reachable without a device certificate) and the enrollment port exposes exactly one
RPC, ``Enroll``, plus health. The unit verifies the enrollment server against the CA
the technician provisioned with the token, so the answer cannot come from an impostor.

Tokens are random 128-bit secrets bound to one device id, stored only as SHA-256
hashes (in SQLite, so ``gate-matcher issue-token`` and ``gate-matcher serve`` share
them), expire after a TTL, and are consumed atomically: the first use wins, every later
use is refused and audited.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gate_contract.clock import now_ms
from gate_contract.keys import DEVICE_ID_RE, DeviceScope, PkiLayout, load_private
from gate_contract.sealing import key_id
from gate_contract.verdicts import signing_key_id
from gate_contract.wire import ENROLLMENT_SERVICE, pb, pb_grpc
from matching_service.audit import AuditLog
from matching_service.dev_ca import sign_device_csr
from matching_service.errors import Rejected, TokenRefused
from matching_service.handlers import guarded, peer_address, register
from matching_service.limits import BurstLog, RateLimit
from matching_service.revocation import RevocationList
from matching_service.server import add_health
from matching_service.store import open_db

log = logging.getLogger("gate.matcher.enrollment")

DEFAULT_TOKEN_TTL_S = 24 * 3600
MAX_CSR_BYTES = 8 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    token_sha256 TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms INTEGER,
    certificate_serial TEXT
);
"""
# Columns added after the first release; existing databases are migrated in place.
_COLUMNS = {"airport": "TEXT NOT NULL DEFAULT ''", "gates": "TEXT NOT NULL DEFAULT ''"}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class EnrollmentTokens:
    def __init__(self, db_path: Path | str = ":memory:", clock_ms: Callable[[], int] = now_ms):
        self._db = open_db(db_path)
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(enrollment_tokens)")}
        for column, kind in _COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE enrollment_tokens ADD COLUMN {column} {kind}")
        self._db.commit()
        self._lock = threading.Lock()
        self._clock = clock_ms

    def issue(
        self, device_id: str, *, scope: DeviceScope, ttl_s: float = DEFAULT_TOKEN_TTL_S
    ) -> str:
        """A one-time token for ``device_id``; its certificate will board only ``scope``."""
        if not DEVICE_ID_RE.fullmatch(device_id):
            raise ValueError(
                f"device id {device_id!r} must be 1..64 letters, digits, '.', '_' or '-'"
                " (it becomes the certificate's name and the unit's [device] id)"
            )
        if ttl_s <= 0:
            raise ValueError("ttl must be positive")
        # Hex, so a token typed or pasted on a command line never starts with "-".
        token = secrets.token_hex(16)
        now = self._clock()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO enrollment_tokens (token_sha256, device_id, issued_at_ms,"
                " expires_at_ms, airport, gates) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    _hash(token),
                    device_id,
                    now,
                    now + int(ttl_s * 1000),
                    scope.airport,
                    " ".join(scope.gates),
                ),
            )
        return token

    def consume(self, token: str, device_id: str) -> DeviceScope:
        """Use the token up for ``device_id`` and return the scope it grants, or raise
        ``TokenRefused``."""
        now = self._clock()
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT device_id, expires_at_ms, used_at_ms, airport, gates FROM enrollment_tokens"
                " WHERE token_sha256 = ?",
                (_hash(token),),
            ).fetchone()
            if row is None:
                raise TokenRefused("unknown")
            bound, expires, used, airport, gates = row
            if used is not None:
                raise TokenRefused("already_used")
            if now > expires:
                raise TokenRefused("expired")
            if bound != device_id:
                raise TokenRefused("wrong_device")
            self._db.execute(
                "UPDATE enrollment_tokens SET used_at_ms = ? WHERE token_sha256 = ?",
                (now, _hash(token)),
            )
        try:
            return DeviceScope(airport, tuple(gates.split()))
        except ValueError as exc:  # a token from before scopes existed
            raise TokenRefused("no_scope") from exc

    def list(self) -> list[dict]:
        """Every token issued, newest first: device, scope, times and state; never the
        token itself (only its hash is stored), its hash's first 12 digits as an id."""
        now = self._clock()
        with self._lock:
            rows = self._db.execute(
                "SELECT token_sha256, device_id, issued_at_ms, expires_at_ms, used_at_ms,"
                " certificate_serial, airport, gates FROM enrollment_tokens"
                " ORDER BY issued_at_ms DESC"
            ).fetchall()
        tokens = []
        for digest, device, issued, expires, used, serial, airport, gates in rows:
            state = "used" if used is not None else ("expired" if now > expires else "open")
            tokens.append(
                {
                    "id": digest[:12],
                    "device_id": device,
                    "airport": airport,
                    "gates": gates.split(),
                    "issued_at_ms": issued,
                    "expires_at_ms": expires,
                    "state": state,
                    "certificate_serial": serial,
                }
            )
        return tokens

    def revoke(self, device_id: str) -> int:
        """Expire every unused token of ``device_id`` now; how many there were."""
        now = self._clock()
        with self._lock, self._db:
            cursor = self._db.execute(
                "UPDATE enrollment_tokens SET expires_at_ms = ? WHERE device_id = ?"
                " AND used_at_ms IS NULL AND expires_at_ms >= ?",
                (now - 1, device_id, now),
            )
        return cursor.rowcount

    def record_serial(self, token: str, serial: int) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE enrollment_tokens SET certificate_serial = ? WHERE token_sha256 = ?",
                (hex(serial), _hash(token)),
            )


def default_attempts() -> RateLimit:
    """Ten enrollments at once from one address, then one every 6 s; 30 at once in all,
    then one a second: a technician's rollout passes, guessing a 128-bit token does not."""
    return RateLimit(per_key_rate=1 / 6, per_key_burst=10, total_rate=1.0, total_burst=30)


class EnrollmentService(pb_grpc.EnrollmentServicer):
    def __init__(
        self,
        pki: PkiLayout,
        tokens: EnrollmentTokens,
        *,
        audit: AuditLog | None = None,
        revocations: RevocationList | None = None,
        attempts: RateLimit | None = None,
    ) -> None:
        """``attempts`` limits enrollment calls per peer address and in all (default:
        ``default_attempts()``)."""
        self._ca_pem = pki.ca_cert.read_bytes()
        self._ca_cert = x509.load_pem_x509_certificate(self._ca_pem)
        self._ca_key = load_private(pki.ca_key)
        sealing = load_private(pki.sealing_key).public_key()
        signing = load_private(pki.signing_key).public_key()
        pem = serialization.Encoding.PEM
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        self._sealing_pem = sealing.public_bytes(pem, spki)
        self._signing_pem = signing.public_bytes(pem, spki)
        self._sealing_kid = key_id(sealing)
        self._signing_kid = signing_key_id(signing)
        self._tokens = tokens
        self.audit = audit or AuditLog()
        self.attempts = attempts or default_attempts()
        self.refusals = BurstLog(log, logging.WARNING)
        self.cancellations = BurstLog(log, logging.INFO)
        self._revocations = revocations or RevocationList()

    def now_ms(self) -> int:
        return now_ms()

    @staticmethod
    def _refuse(code: grpc.StatusCode, event: str, device: str, detail: str) -> Rejected:
        return Rejected(code, event, detail, device_id=device)

    @guarded("Enroll")
    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext):
        device = request.device_id[:64]
        if not self.attempts.allow(peer_address(context)):
            # Token guessing needs no client certificate: slow every peer, and all of them.
            raise self._refuse(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "enrollment_rate_limited",
                device,
                "too many enrollment attempts; wait and retry",
            )
        if not DEVICE_ID_RE.fullmatch(request.device_id):
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT, "bad_request", device, "bad device id"
            )
        if not request.csr_pem or len(request.csr_pem) > MAX_CSR_BYTES:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT, "bad_csr", device, "CSR missing or large"
            )
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem)
            valid = csr.is_signature_valid
            names = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        except ValueError as exc:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT, "bad_csr", device, f"bad CSR: {exc}"
            ) from exc
        if not valid:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT, "bad_csr", device, "CSR signature bad"
            )
        if not names or names[0].value != request.device_id:
            raise self._refuse(
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_csr",
                device,
                "CSR does not name this device",
            )
        if self._revocations.is_revoked(-1, request.device_id):
            raise self._refuse(
                grpc.StatusCode.PERMISSION_DENIED,
                "certificate_revoked",
                device,
                "device is revoked",
            )
        try:
            scope = self._tokens.consume(request.enrollment_token, request.device_id)
        except TokenRefused as exc:
            code = (
                grpc.StatusCode.PERMISSION_DENIED
                if exc.reason == "wrong_device"
                else grpc.StatusCode.UNAUTHENTICATED
            )
            raise self._refuse(code, f"token_{exc.reason}", device, str(exc)) from exc
        cert = sign_device_csr(self._ca_cert, self._ca_key, csr, request.device_id, scope)
        self._tokens.record_serial(request.enrollment_token, cert.serial_number)
        self.audit.security(
            "device_enrolled",
            grpc.StatusCode.OK.name,
            method="Enroll",
            device_id=request.device_id,
            detail=f"certificate serial {cert.serial_number:#x}",
        )
        log.info("enrolled %s (serial %#x)", request.device_id, cert.serial_number)
        return pb.EnrollResponse(
            certificate_chain_pem=cert.public_bytes(serialization.Encoding.PEM),
            ca_certificate_pem=self._ca_pem,
            sealing_public_key_pem=self._sealing_pem,
            sealing_key_id=self._sealing_kid,
            signing_public_key_pem=self._signing_pem,
            signing_key_id=self._signing_kid,
            certificate_not_after_ms=int(cert.not_valid_after_utc.timestamp() * 1000),
        )


def start_enrollment_server(
    service: EnrollmentService, pki: PkiLayout, address: str = "127.0.0.1:0", workers: int = 2
) -> tuple[grpc.Server, int]:
    """Server-only TLS (no client certificate exists yet); only Enroll and health."""
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        require_client_auth=False,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[("grpc.max_receive_message_length", 64 * 1024), ("grpc.so_reuseport", 0)],
    )
    register(server, service, "Enrollment")
    service.health = add_health(server, (ENROLLMENT_SERVICE,))
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc's "Failed to bind": in use, or not an address of this host
        port = 0
    if port == 0:
        raise OSError(
            f"could not bind the enrollment service to {address} (in use by another program,"
            " or not an address of this host)"
        )
    server.start()
    return server, port


__all__ = [
    "DEFAULT_TOKEN_TTL_S",
    "MAX_CSR_BYTES",
    "EnrollmentService",
    "EnrollmentTokens",
    "default_attempts",
    "start_enrollment_server",
]
