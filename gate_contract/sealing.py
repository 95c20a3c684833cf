"""Payload sealing: encrypt a capture to the matching service's X25519 key, in memory.

Format (version 2): ``0x02 | ephemeral public key (32) | nonce (12) | AES-256-GCM
ciphertext and tag``. The key is HKDF-SHA256 over the X25519 shared secret, salted with
both public keys. Everything the verdict depends on is bound as associated data
(:class:`SealBinding`: capture id, device id, session, capture time, the boarding pass),
plus the key id, so a payload cannot be replayed under another capture, device, session
or time, nor with another pass. Output goes into a ``bytearray`` the caller owns and
zeroizes; nothing here keeps a copy.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gate_contract.errors import SealError

VERSION = 2
_HEADER = 1 + 32 + 12
_TAG = 16
_INFO = b"gate.v1 capture seal"


def key_id(public_key: X25519PublicKey) -> str:
    """Short, stable name of a sealing key so both ends can tell which one is in use."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class SealBinding:
    """What a sealed capture is bound to: exactly the header the verdict will answer."""

    capture_id: str
    device_id: str
    session_id: str = ""
    captured_at_ms: int = 0
    boarding_pass: str = ""  # pass-then-face: the raw BCBP text sent with the capture


def _associated_data(binding: SealBinding, kid: str) -> bytes:
    """Unambiguous binding of every field: each is length-prefixed."""
    values = (
        "gate.v1 seal v2",
        binding.capture_id,
        binding.device_id,
        binding.session_id,
        str(int(binding.captured_at_ms)),
        binding.boarding_pass,
        kid,
    )
    try:
        fields = [f.encode() for f in values]
    except UnicodeEncodeError as exc:
        raise SealError(f"a bound field is not valid text: {exc.reason}") from exc
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral + recipient, info=_INFO).derive(shared)


def sealed_size(plaintext_size: int) -> int:
    return _HEADER + plaintext_size + _TAG


def seal_into(
    out: bytearray,
    plaintext: memoryview | bytes,
    recipient: X25519PublicKey,
    binding: SealBinding,
) -> None:
    """Encrypt ``plaintext`` into ``out`` (exactly ``sealed_size(len(plaintext))`` bytes)."""
    if len(out) != sealed_size(len(plaintext)):
        raise ValueError("output buffer has the wrong size for this plaintext")
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    rec_pub = recipient.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    nonce = os.urandom(12)
    aead = AESGCM(_derive(ephemeral.exchange(recipient), eph_pub, rec_pub))
    out[0] = VERSION
    out[1:33] = eph_pub
    out[33:_HEADER] = nonce
    aad = _associated_data(binding, key_id(recipient))
    aead.encrypt_into(nonce, plaintext, aad, memoryview(out)[_HEADER:])


def open_sealed(
    sealed: bytes | bytearray, private_key: X25519PrivateKey, binding: SealBinding
) -> bytearray:
    """Decrypt a payload sealed to ``private_key``; raises ``SealError`` on any mismatch."""
    if len(sealed) < _HEADER + _TAG:
        raise SealError(f"sealed payload too short ({len(sealed)} bytes)")
    if sealed[0] != VERSION:
        raise SealError(f"unknown seal version {sealed[0]}")
    view = memoryview(sealed)
    eph_pub = bytes(view[1:33])
    nonce = bytes(view[33:_HEADER])
    public = private_key.public_key()
    rec_pub = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError as exc:
        raise SealError(f"bad ephemeral key: {exc}") from exc
    aead = AESGCM(_derive(shared, eph_pub, rec_pub))
    out = bytearray(len(sealed) - _HEADER - _TAG)
    aad = _associated_data(binding, key_id(public))
    try:
        aead.decrypt_into(nonce, view[_HEADER:], aad, out)
    except InvalidTag as exc:
        raise SealError(
            "sealed payload failed authentication (tampered, wrong key, or bound to another"
            " capture, device, session, time or pass)"
        ) from exc
    return out


__all__ = ["VERSION", "SealBinding", "key_id", "open_sealed", "seal_into", "sealed_size"]
