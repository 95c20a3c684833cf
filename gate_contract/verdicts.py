"""What a verdict signature covers, shared by the matching service and the appliance.

The service signs, with Ed25519, the capture id, device id, decision, traveller token
and issue time. The appliance accepts a verdict only if that signature verifies with
the pinned key, it answers the capture just sent, and it was issued within a short
clock window.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gate_contract.errors import VerdictRejected
from gate_contract.wire import pb

CLOCK_WINDOW_MS = 30_000


def signing_key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def verdict_message(verdict: pb.Verdict) -> bytes:
    """Canonical bytes a verdict signature covers (unambiguous: length-prefixed fields)."""
    fields = (
        b"gate.v1.verdict",
        verdict.capture_id.encode(),
        verdict.device_id.encode(),
        str(int(verdict.decision)).encode(),
        verdict.traveller_token.encode(),
        str(verdict.issued_at_ms).encode(),
        verdict.signing_key_id.encode(),
    )
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def check_verdict(
    verdict: pb.Verdict,
    key: Ed25519PublicKey,
    *,
    capture_id: str,
    device_id: str,
    now_ms: int,
) -> None:
    """Raise ``VerdictRejected`` unless the verdict is authentic and answers this capture."""
    if verdict.signing_key_id != signing_key_id(key):
        raise VerdictRejected(f"verdict signed with unknown key id {verdict.signing_key_id!r}")
    try:
        key.verify(verdict.signature, verdict_message(verdict))
    except InvalidSignature as exc:
        raise VerdictRejected("verdict signature does not verify") from exc
    if verdict.capture_id != capture_id or verdict.device_id != device_id:
        raise VerdictRejected("verdict answers another capture or device")
    if abs(now_ms - verdict.issued_at_ms) > CLOCK_WINDOW_MS:
        raise VerdictRejected("verdict issued outside the clock window")


__all__ = ["CLOCK_WINDOW_MS", "check_verdict", "signing_key_id", "verdict_message"]
