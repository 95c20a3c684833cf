"""`gatectl bench purge`: time from "verdict received" to every buffer of a capture zeroized.

Each transaction builds what a real one holds: a 1280x720 frame, the face crop,
the JPEG and the payload sealed to a real X25519 key (``appliance.payload.seal_capture``).
The clock starts when the verdict is "received" and stops when
``CaptureTransaction.purge`` returns, i.e. every buffer is zeroized and released and
the ledger record is made (writing it to the ledger happens after, and is not part of
the purge budget). A write audit runs throughout and counts files holding image data.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.custody.payload import seal_capture
from appliance.custody.transaction import CaptureTransaction
from appliance.vision.detectors.base import Face
from gate_contract.clock import now_ms
from gate_contract.paths import data_dir
from gate_contract.sealing import SealBinding
from testbed.write_audit import WriteAudit

WIDTH, HEIGHT = 1280, 720


def _scene(rng: np.random.Generator) -> np.ndarray:
    """A camera-like frame: smooth shading plus sensor noise (JPEG sizes like a photo's)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(x // 5) % 256, (y // 3) % 256, ((x + y) // 7) % 256], axis=-1)
    return (base + rng.integers(0, 24, size=(HEIGHT, WIDTH, 3))).astype(np.uint8)


def _face() -> Face:
    """A face box as the detector reports one for a traveller at the gate (~300 px wide)."""
    x0, y0 = WIDTH / 2 - 150, HEIGHT / 2 - 180
    return Face(0.95, (x0, y0, x0 + 300, y0 + 340), np.zeros((6, 2), np.float32))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def bench_purge(transactions: int = 1000) -> dict:
    """Run ``transactions`` captures; returns timings in microseconds and files written."""
    if transactions < 1:
        raise ValueError("transactions must be at least 1")
    rng = np.random.default_rng(20261125)
    scene = _scene(rng)
    recipient = X25519PrivateKey.generate().public_key()
    face = _face()
    audit = WriteAudit.instance()
    audit.start(watch=[data_dir(), Path.cwd()])
    timings_us: list[float] = []
    buffers = 0
    zeroized_bytes = 0
    try:
        for _ in range(transactions):
            tx = CaptureTransaction("bench-device")
            frame = tx.track(scene.copy())
            tx.captured_at_ms = now_ms()
            binding = SealBinding(tx.capture_id, tx.device_id, "bench", tx.captured_at_ms)
            seal_capture(tx, frame, face, recipient, binding)
            tx.sent_at_ms = now_ms()
            started = time.perf_counter_ns()  # the verdict is in
            tx.verdict_at_ms = now_ms()
            record = tx.purge("granted", "verdict")
            timings_us.append((time.perf_counter_ns() - started) / 1000)
            if frame.any():
                raise AssertionError("purge left pixels in the frame")
            buffers += record.buffers_zeroized
            zeroized_bytes += record.bytes_zeroized
    finally:
        audit.stop()
    return {
        "transactions": transactions,
        "purge_us_p50": round(statistics.median(timings_us), 1),
        "purge_us_p99": round(_percentile(timings_us, 0.99), 1),
        "purge_us_max": round(max(timings_us), 1),
        "buffers_per_transaction": round(buffers / transactions, 2),
        "bytes_zeroized_per_transaction": zeroized_bytes // transactions,
        "image_files_written": len(audit.image_files()),
        "files_written": len(audit.written),
    }


__all__ = ["bench_purge"]
