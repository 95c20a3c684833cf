"""Development PKI made at set-up: a CA, the service's TLS and payload keys, one device.

Production units get their certificate through enrollment (see the transport issue);
this gives a developer machine, the tests and the demo the same shape of trust:
mutual TLS pinned to one CA, an X25519 key the payloads are sealed to, and an Ed25519
key that signs verdicts. Private keys are written with mode 0600.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import NameOID

from gate_contract.files import write_private


@dataclass(frozen=True)
class PkiLayout:
    """File names under one PKI root; the service and device halves are separate folders."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "service" / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "service" / "server.key"

    @property
    def sealing_key(self) -> Path:
        return self.root / "service" / "sealing.key"

    @property
    def signing_key(self) -> Path:
        return self.root / "service" / "signing.key"

    @property
    def device_cert(self) -> Path:
        return self.root / "device" / "device.pem"

    @property
    def device_key(self) -> Path:
        return self.root / "device" / "device.key"

    @property
    def sealing_public(self) -> Path:
        return self.root / "device" / "service-sealing.pub"

    @property
    def signing_public(self) -> Path:
        return self.root / "device" / "service-signing.pub"


def write_private_key(path: Path, key) -> None:
    """PEM (PKCS#8, unencrypted), written atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, data)  # atomic, and 0600 even when it replaces an older key


def write_public_key(path: Path, key) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_private(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def load_sealing_public(path: Path) -> X25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, X25519PublicKey):
        raise ValueError(f"{path} is not an X25519 public key")
    return key


def load_signing_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


# --- Device certificates from a CSR (enrollment) and device folders -------------------


def make_csr(device_id: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A new device key and a PEM CSR naming ``device_id`` (the key never leaves the unit)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def write_device_layout(
    root: Path,
    *,
    device_key,
    certificate_chain_pem: bytes,
    ca_pem: bytes,
    sealing_public_pem: bytes,
    signing_public_pem: bytes,
) -> PkiLayout:
    """Write a device's half of a PKI (what ``MatchingClient`` reads) under ``root``."""
    layout = PkiLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    layout.ca_cert.write_bytes(ca_pem)
    write_private_key(layout.device_key, device_key)
    layout.device_cert.write_bytes(certificate_chain_pem)
    layout.sealing_public.write_bytes(sealing_public_pem)
    layout.signing_public.write_bytes(signing_public_pem)
    return layout


__all__ = [
    "PkiLayout",
    "load_private",
    "load_sealing_public",
    "load_signing_public",
    "make_csr",
    "write_device_layout",
    "write_private_key",
    "write_public_key",
]
