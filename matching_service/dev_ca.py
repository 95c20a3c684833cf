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
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gate_contract.keys import (
    PkiLayout,
    load_private,
    make_csr,
    write_device_layout,
    write_private_key,
    write_public_key,
)

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
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
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


def create_dev_pki(root: Path, device_id: str = DEV_DEVICE_ID) -> PkiLayout:
    """Create (once) a complete development PKI under ``root``; returns its layout."""
    layout = PkiLayout(root)
    if layout.signing_public.is_file():
        return layout
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gate development CA")])
    ca_cert = _certificate("Gate development CA", ca_key.public_key(), ca_name, ca_key, ca=True)
    root.mkdir(parents=True, exist_ok=True)
    write_private_key(layout.ca_key, ca_key)
    layout.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    for cert_path, key_path, subject, role in (
        (layout.server_cert, layout.server_key, "localhost", {"server": True}),
        (layout.device_cert, layout.device_key, device_id, {"client": True}),
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
    return layout


DEVICE_CERT_DAYS = 365


def sign_device_csr(
    ca_cert: x509.Certificate,
    ca_key,
    csr: x509.CertificateSigningRequest,
    device_id: str,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A client-auth certificate for ``device_id`` over the CSR's key, signed by the CA.

    The subject is set by the CA (common name = device id), never copied from the CSR,
    so a device cannot ask for someone else's name or for CA rights.
    """
    if not csr.is_signature_valid:
        raise ValueError("CSR signature does not verify")
    now = dt.datetime.now(dt.UTC)
    not_before = not_before or now - dt.timedelta(minutes=5)
    not_after = not_after or now + dt.timedelta(days=DEVICE_CERT_DAYS)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
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
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> PkiLayout:
    """A new device folder under ``root`` signed by ``pki``'s CA (tests, field spares)."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key, csr_pem = make_csr(device_id)
    cert = sign_device_csr(
        ca_cert,
        load_private(pki.ca_key),
        x509.load_pem_x509_csr(csr_pem),
        device_id,
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


__all__ = ["DEVICE_CERT_DAYS", "DEV_DEVICE_ID", "create_dev_pki", "issue_device", "sign_device_csr"]
