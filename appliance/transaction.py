"""One traveller's capture and the single owner of every buffer that held its pixels.

Whatever ends the transaction (verdict, error, timeout, opt-out, shutdown), ``purge``
overwrites each tracked buffer with zeros, drops the references and returns the
record that goes to the purge ledger: ids, hashes and times, never pixels.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import asdict, dataclass

import numpy as np

Buffer = np.ndarray | bytearray


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class PurgeRecord:
    capture_id: str
    device_id: str
    sealed_sha256: str
    captured_at_ms: int
    sent_at_ms: int
    verdict_at_ms: int
    purged_at_ms: int
    outcome: str
    reason: str
    buffers_zeroized: int
    bytes_zeroized: int

    def to_dict(self) -> dict:
        return asdict(self)


def zeroize(buffer: Buffer) -> int:
    """Overwrite ``buffer`` in place; returns the number of bytes cleared."""
    if isinstance(buffer, np.ndarray):
        buffer.fill(0)
        return buffer.nbytes
    buffer[:] = bytes(len(buffer))
    return len(buffer)


class CaptureTransaction:
    """Tracks the buffers of one capture and purges them exactly once."""

    def __init__(self, device_id: str) -> None:
        self.capture_id = str(uuid.uuid4())
        self.device_id = device_id
        self.captured_at_ms = 0
        self.sent_at_ms = 0
        self.verdict_at_ms = 0
        self.sealed_sha256 = ""
        self._buffers: list[Buffer] = []
        self.record: PurgeRecord | None = None

    def track(self, buffer: Buffer) -> Buffer:
        """Register a buffer holding this capture's pixels (or their ciphertext)."""
        if self.record is not None:
            raise RuntimeError("transaction already purged")
        self._buffers.append(buffer)
        return buffer

    def note_sealed(self, sealed: bytearray) -> None:
        self.sealed_sha256 = hashlib.sha256(sealed).hexdigest()

    @property
    def purged(self) -> bool:
        return self.record is not None

    def purge(self, outcome: str, reason: str) -> PurgeRecord:
        """Zeroize and release every tracked buffer; idempotent."""
        if self.record is not None:
            return self.record
        cleared = sum(zeroize(b) for b in self._buffers)
        count = len(self._buffers)
        self._buffers.clear()
        self.record = PurgeRecord(
            capture_id=self.capture_id,
            device_id=self.device_id,
            sealed_sha256=self.sealed_sha256,
            captured_at_ms=self.captured_at_ms,
            sent_at_ms=self.sent_at_ms,
            verdict_at_ms=self.verdict_at_ms,
            purged_at_ms=now_ms(),
            outcome=outcome,
            reason=reason,
            buffers_zeroized=count,
            bytes_zeroized=cleared,
        )
        return self.record

    def __enter__(self) -> CaptureTransaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Leaving the block always purges: an exception is recorded as an error."""
        if exc_type is not None:
            self.purge("error", f"exception: {exc_type.__name__}")
        else:
            self.purge("completed", "transaction closed")
