"""One traveller's capture and the single owner of every buffer that held its pixels.

Whatever ends the transaction (verdict, error, timeout, opt-out, shutdown), ``purge``
overwrites each tracked buffer with zeros, drops the references and returns the
record that goes to the purge ledger: ids, hashes and times, never pixels.

Only mutable buffers can be owned (numpy arrays, bytearrays, writable memoryviews):
``track`` refuses ``bytes`` and read-only arrays, which could not be overwritten. The
frame the camera handed over last is held too (``watch_frame``), so a transaction cut
short while that frame is being examined (a shutdown signal, an exception in the
detector) still zeroizes it. A shutdown signal that arrives during the purge waits
until the purge is done (``appliance.hardening.deferred_shutdown``).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass

import numpy as np

from appliance.shutdown import ShutdownRequested, deferred_shutdown
from gate_contract.clock import now_ms

Buffer = np.ndarray | bytearray | memoryview


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
    if isinstance(buffer, memoryview):
        buffer = buffer.cast("B") if buffer.c_contiguous else buffer
        if not buffer.c_contiguous:
            raise TypeError("non-contiguous memoryview cannot be zeroized in one pass")
    view = np.frombuffer(buffer, np.uint8)  # no copy: fill writes the buffer's own memory
    view.fill(0)
    return view.nbytes


def _check_zeroizable(buffer: object) -> None:
    if isinstance(buffer, np.ndarray):
        if not buffer.flags.writeable:
            raise TypeError("a read-only array cannot be zeroized; track a writable copy")
        return
    if isinstance(buffer, bytearray):
        return
    if isinstance(buffer, memoryview):
        if buffer.readonly or not buffer.c_contiguous:
            raise TypeError("only a writable, contiguous memoryview can be zeroized")
        return
    raise TypeError(f"{type(buffer).__name__} cannot be zeroized; use a bytearray or an array")


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
        self._current_frame: np.ndarray | None = None
        self.record: PurgeRecord | None = None
        self.recorded = False  # set once the purge record is in the ledger

    def track(self, buffer: Buffer) -> Buffer:
        """Register a buffer holding this capture's pixels (or their ciphertext)."""
        if self.record is not None:
            raise RuntimeError("transaction already purged")
        _check_zeroizable(buffer)
        if not any(b is buffer for b in self._buffers):
            self._buffers.append(buffer)
        return buffer

    def watch_frame(self, frame: np.ndarray) -> np.ndarray:
        """Hold the frame the camera handed over last (the one before is superseded).

        Frame selection zeroizes frames it does not choose; this keeps a handle on the
        one in hand so an interrupted transaction zeroizes it too. It counts as a purged
        buffer only if it was not also ``track``-ed.
        """
        if self.record is not None:
            zeroize(frame)  # arrived after the purge: never kept
            raise RuntimeError("transaction already purged")
        _check_zeroizable(frame)
        self._current_frame = frame
        return frame

    def note_sealed(self, sealed: bytearray) -> None:
        self.sealed_sha256 = hashlib.sha256(sealed).hexdigest()

    @property
    def purged(self) -> bool:
        return self.record is not None

    def purge(self, outcome: str, reason: str) -> PurgeRecord:
        """Zeroize and release every tracked buffer; idempotent.

        Every buffer is attempted even if one fails; a failure is re-raised after the
        others are cleared and the record is made (the purge is then still recorded).
        """
        if self.record is not None:
            return self.record
        with deferred_shutdown():
            return self._purge(outcome, reason)

    def _purge(self, outcome: str, reason: str) -> PurgeRecord:
        buffers = self._buffers
        current = self._current_frame
        if current is not None and not any(b is current for b in buffers):
            buffers.append(current)
        cleared = 0
        failure: BaseException | None = None
        for buffer in buffers:
            try:
                cleared += zeroize(buffer)
            except Exception as exc:  # keep going: the other buffers must still be cleared
                failure = failure or exc
        count = len(buffers)
        self._buffers = []
        self._current_frame = None
        del buffers, current
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
        if failure is not None:
            raise failure
        return self.record

    def __enter__(self) -> CaptureTransaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Leaving the block always purges: an exception is recorded as an error."""
        if exc_type is not None and issubclass(exc_type, ShutdownRequested):
            self.purge("referred", "shutdown")
        elif exc_type is not None:
            self.purge("error", f"exception: {exc_type.__name__}")
        else:
            self.purge("completed", "transaction closed")


__all__ = ["Buffer", "CaptureTransaction", "PurgeRecord", "zeroize"]
