"""Who is calling: the device its mutual-TLS certificate names, in date and not revoked."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from gate_contract.keys import DeviceScope
from matching_service.errors import Rejected
from matching_service.revocation import RevocationList

CERTIFICATE_CACHE = 1024  # parsed client certificates kept (one per connected gate)


@dataclass(frozen=True)
class Peer:
    device_id: str
    serial: int
    scope: DeviceScope | None  # where its certificate lets it board (None: nowhere)


class PeerAuthenticator:
    """Turns a call's TLS auth context into a :class:`Peer`, or raises ``Rejected``.

    TLS already refused certificates that do not chain to the CA or are expired at the
    handshake; this catches one that expired on a connection still open, and revocations,
    which TLS knows nothing about.
    """

    def __init__(self, revocations: RevocationList, clock_ms: Callable[[], int]) -> None:
        self.revocations = revocations
        self._clock = clock_ms
        self._certs: OrderedDict[bytes, x509.Certificate] = OrderedDict()
        self._lock = threading.Lock()

    def _certificate(self, pem: bytes) -> x509.Certificate:
        with self._lock:
            cert = self._certs.get(pem)
            if cert is not None:
                self._certs.move_to_end(pem)
                return cert
        cert = x509.load_pem_x509_certificate(pem)
        with self._lock:
            self._certs[pem] = cert
            if len(self._certs) > CERTIFICATE_CACHE:
                self._certs.popitem(last=False)
        return cert

    def authenticate(self, context: grpc.ServicerContext) -> Peer:
        """The calling device from its TLS certificate: named, in date, not revoked."""
        pems = context.auth_context().get("x509_pem_cert") or []
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
        return Peer(device, cert.serial_number, DeviceScope.of(cert))


def same_device(peer: Peer, claimed: str, capture_id: str = "") -> None:
    """A request speaks only for the device its certificate names."""
    if claimed != peer.device_id:
        raise Rejected(
            grpc.StatusCode.PERMISSION_DENIED,
            "device_mismatch",
            "device id does not match certificate",
            device_id=peer.device_id,
            capture_id=capture_id,
        )


__all__ = ["CERTIFICATE_CACHE", "Peer", "PeerAuthenticator", "same_device"]
