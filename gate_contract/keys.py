"""Development PKI made at set-up: a CA, the service's TLS and payload keys, one device.

Production units get their certificate through enrollment (see the transport issue);
this gives a developer machine, the tests and the demo the same shape of trust:
mutual TLS pinned to one CA, an X25519 key the payloads are sealed to, and an Ed25519
key that signs verdicts. Private keys are written with mode 0600.
"""

from __future__ import annotations

import re
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


# A device id is its certificate's common name, a config value and a log field: plain.
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_AIRPORT_RE = re.compile(r"[A-Z]{3}")
_GATE_RE = re.compile(r"[A-Z0-9-]{1,8}")


@dataclass(frozen=True)
class DeviceScope:
    """Where a device may board flights: its departure airport and, optionally, gates.

    The CA writes it into the device certificate's subject (``OU=airport=LAX``,
    ``OU=gates=B42 B43``), so the matching service authorises every session from the
    certificate itself and a device can never search another airport's galleries.
    """

    airport: str
    gates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _AIRPORT_RE.fullmatch(self.airport):
            raise ValueError(f"airport {self.airport!r} must be three capital letters (IATA)")
        for gate in self.gates:
            if not _GATE_RE.fullmatch(gate):
                raise ValueError(f"gate {gate!r} must be 1..8 capital letters, digits or '-'")

    def allows(self, airport: str, gate: str) -> bool:
        if airport.upper() != self.airport:
            return False
        return not self.gates or gate.upper() in self.gates

    def name_attributes(self) -> list[x509.NameAttribute]:
        unit = NameOID.ORGANIZATIONAL_UNIT_NAME
        attributes = [x509.NameAttribute(unit, f"airport={self.airport}")]
        if self.gates:
            attributes.append(x509.NameAttribute(unit, f"gates={' '.join(self.gates)}"))
        return attributes

    @staticmethod
    def of(certificate: x509.Certificate) -> DeviceScope | None:
        """The scope a certificate grants (None: no airport, so no session anywhere)."""
        values: dict[str, str] = {}
        for attribute in certificate.subject.get_attributes_for_oid(
            NameOID.ORGANIZATIONAL_UNIT_NAME
        ):
            key, _, value = str(attribute.value).partition("=")
            values[key] = value
        if "airport" not in values:
            return None
        try:
            return DeviceScope(values["airport"], tuple(values.get("gates", "").split()))
        except ValueError:
            return None


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
    "DEVICE_ID_RE",
    "DeviceScope",
    "PkiLayout",
    "load_private",
    "load_sealing_public",
    "load_signing_public",
    "make_csr",
    "write_device_layout",
    "write_private_key",
    "write_public_key",
]
