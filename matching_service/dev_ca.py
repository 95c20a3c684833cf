"""The development CA: a PKI for a developer machine, the tests and the demo, and device
certificates signed from a CSR (enrollment).

It gives the same shape of trust as production: mutual TLS pinned to one CA, an X25519
key the payloads are sealed to, and an Ed25519 key that signs verdicts. Private keys are
written 0600. The CA signs the subject itself (common name = device id), never a name
copied from the CSR.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gate_contract.keys import (
    DeviceScope,
    PkiLayout,
    load_private,
    make_csr,
    write_device_layout,
    write_private_key,
    write_public_key,
)

log = logging.getLogger("gate.matcher")

DEV_DEVICE_ID = "gate-dev-0001"


def _certificate(
    subject: str,
    public_key,
    issuer: x509.Name,
    issuer_key,
    *,
    ca: bool,
    client: bool = False,
    server: bool = False,
    scope: DeviceScope | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    names = [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    if scope is not None:
        names += scope.name_attributes()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 if not ca else 3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


DEV_AIRPORT = "LAX"  # where the development device may board (the demo flight departs there)


def _device_has_a_scope(layout: PkiLayout) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(layout.device_cert.read_bytes())
    except (OSError, ValueError):
        return False
    return DeviceScope.of(cert) is not None


def create_dev_pki(
    root: Path, device_id: str = DEV_DEVICE_ID, scope: DeviceScope | None = None
) -> PkiLayout:
    """Create (once) a complete development PKI under ``root``; returns its layout.

    Folders are 0700 and private keys 0600. The device is enrolled for ``scope``
    (default: any gate at ``DEV_AIRPORT``).
    """
    layout = PkiLayout(root)
    if layout.signing_public.is_file():
        if _device_has_a_scope(layout):
            return layout
        log.warning(
            "development PKI %s predates device scopes (its device may open no session): made anew",
            root,
        )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gate development CA")])
    ca_cert = _certificate("Gate development CA", ca_key.public_key(), ca_name, ca_key, ca=True)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    write_private_key(layout.ca_key, ca_key)
    layout.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    device_scope = scope or DeviceScope(DEV_AIRPORT)
    for cert_path, key_path, subject, role in (
        (layout.server_cert, layout.server_key, "localhost", {"server": True}),
        (layout.device_cert, layout.device_key, device_id, {"client": True, "scope": device_scope}),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(subject, key.public_key(), ca_name, ca_key, ca=False, **role)
        write_private_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    sealing = X25519PrivateKey.generate()
    signing = Ed25519PrivateKey.generate()
    write_private_key(layout.sealing_key, sealing)
    write_private_key(layout.signing_key, signing)
    write_public_key(layout.sealing_public, sealing.public_key())
    write_public_key(layout.signing_public, signing.public_key())
    for folder in (layout.server_cert.parent, layout.device_cert.parent):
        folder.chmod(0o700)
    return layout


DEVICE_CERT_DAYS = 365


def sign_device_csr(
    ca_cert: x509.Certificate,
    ca_key,
    csr: x509.CertificateSigningRequest,
    device_id: str,
    scope: DeviceScope,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A client-auth certificate for ``device_id`` over the CSR's key, signed by the CA.

    The subject is set by the CA (common name = device id, and the airport and gates it
    may board), never copied from the CSR, so a device cannot ask for someone else's name,
    another airport or CA rights.
    """
    if not csr.is_signature_valid:
        raise ValueError("CSR signature does not verify")
    now = dt.datetime.now(dt.UTC)
    not_before = not_before or now - dt.timedelta(minutes=5)
    not_after = not_after or now + dt.timedelta(days=DEVICE_CERT_DAYS)
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, device_id), *scope.name_attributes()]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def issue_device(
    pki: PkiLayout,
    root: Path,
    device_id: str,
    *,
    scope: DeviceScope | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> PkiLayout:
    """A new device folder under ``root`` signed by ``pki``'s CA (tests, field spares),
    for ``scope`` (default: any gate at ``DEV_AIRPORT``)."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key, csr_pem = make_csr(device_id)
    cert = sign_device_csr(
        ca_cert,
        load_private(pki.ca_key),
        x509.load_pem_x509_csr(csr_pem),
        device_id,
        scope or DeviceScope(DEV_AIRPORT),
        not_before=not_before,
        not_after=not_after,
    )
    return write_device_layout(
        root,
        device_key=key,
        certificate_chain_pem=cert.public_bytes(serialization.Encoding.PEM),
        ca_pem=pki.ca_cert.read_bytes(),
        sealing_public_pem=pki.sealing_public.read_bytes(),
        signing_public_pem=pki.signing_public.read_bytes(),
    )


__all__ = [
    "DEVICE_CERT_DAYS",
    "DEV_AIRPORT",
    "DEV_DEVICE_ID",
    "create_dev_pki",
    "issue_device",
    "sign_device_csr",
]
