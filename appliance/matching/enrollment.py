"""Enrollment: a unit makes its own key and CSR and trades a one-time token for a
certificate, checking that the answer chains to the CA the technician provisioned."""

from __future__ import annotations

from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from appliance.errors import EnrollmentFailed
from appliance.matching.client import status_code
from gate_contract.keys import DeviceScope, PkiLayout, make_csr, write_device_layout
from gate_contract.sealing import key_id
from gate_contract.verdicts import signing_key_id
from gate_contract.wire import pb, pb_grpc


def enroll(
    target: str,
    bootstrap_ca_pem: bytes,
    token: str,
    device_id: str,
    root: Path,
    *,
    airport: str | None = None,
    deadline_s: float = 10.0,
) -> PkiLayout:
    """Enroll this unit: new key + CSR, one-time token, write the device PKI under ``root``.

    ``bootstrap_ca_pem`` is the CA the technician provisions with the token; the
    enrollment server's TLS certificate must chain to it, and so must the certificate
    returned. The private key is made here and never leaves the unit. With ``airport``,
    the certificate must let the unit board flights from there (the CA sets the scope the
    token was issued for).
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
            raise EnrollmentFailed(explain_refusal(target, device_id, exc, deadline_s)) from exc
    _check_enrollment(response, bootstrap_ca_pem, device_id, key)
    if airport is not None:
        leaf = x509.load_pem_x509_certificates(response.certificate_chain_pem)[0]
        scope = DeviceScope.of(leaf)
        if scope is None or scope.airport != airport.upper():
            granted = scope.airport if scope else "no airport"
            raise EnrollmentFailed(
                f"the token enrols this unit for {granted}, not {airport}: issue a token with"
                f" `gate-matcher issue-token --airport {airport}`"
            )
    return write_device_layout(
        root,
        device_key=key,
        certificate_chain_pem=response.certificate_chain_pem,
        ca_pem=response.ca_certificate_pem,
        sealing_public_pem=response.sealing_public_key_pem,
        signing_public_pem=response.signing_public_key_pem,
    )


_TOKEN_REASONS = {
    "unknown": "is not known to the enrollment service (mistyped, or from another service)",
    "already used": "has already been used (each token enrols once)",
    "expired": "has expired",
    "wrong device": "was issued for another device id",
}


def explain_refusal(target: str, device_id: str, exc: grpc.RpcError, deadline_s: float) -> str:
    """What really failed, for the technician: the address, the TLS trust, or the token.
    Only a refusal of the token itself blames the token."""
    code = status_code(exc)
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    lowered = details.lower()
    issue = f"`gate-matcher issue-token --device-id {device_id}`"
    if code is grpc.StatusCode.UNAVAILABLE:
        if "handshake" in lowered or "ssl" in lowered or "certificate" in lowered:
            return (
                f"TLS with the enrollment service at {target} failed: its certificate does"
                " not chain to the CA in --ca-file (wrong CA file, or not the enrollment"
                " port of that service)"
            )
        if "resolv" in lowered or "lookup" in lowered or "dns" in lowered:
            return (
                f"cannot reach the enrollment service at {target}: the host name does not"
                " resolve; check --enroll"
            )
        return (
            f"cannot reach the enrollment service at {target} (nothing answers there:"
            " connection refused or no route); check --enroll, the port and the network"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"the enrollment service at {target} did not answer within {deadline_s:.0f} s;"
            " check --enroll and the network"
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        reason = lowered.removeprefix("enrollment token ").strip()
        if reason in _TOKEN_REASONS:
            what = _TOKEN_REASONS[reason]
            return f"enrollment refused: the token {what}; issue a new one with {issue}"
        if "revoked" in lowered:
            return f"enrollment refused: device {device_id} is revoked on the matching service"
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"enrollment refused: too many attempts at {target}; wait a minute and retry"
    return f"enrollment refused by {target}: {code.name}: {details}"


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


__all__ = ["enroll", "explain_refusal"]
