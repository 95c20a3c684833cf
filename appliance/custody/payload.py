"""Turn the chosen frame into a sealed payload, tracking every intermediate buffer.

The matcher needs the face, not the gate hall: we crop the face with a margin, encode it
as JPEG in memory and seal it to the service's key. The crop, the JPEG and the sealed
bytes are all registered with the transaction so its purge reaches them. A frame chosen
with exposure correction has its crop put through the same global tone curve the face
was measured with (``appliance.vision.tone``; nothing else is changed), so the matcher
sees what the quality gate passed.
"""

from __future__ import annotations

import cv2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from appliance.custody.transaction import CaptureTransaction
from appliance.errors import EncodeError
from appliance.vision.detectors.base import Face
from appliance.vision.tone import apply_gamma
from gate_contract.sealing import SealBinding, seal_into, sealed_size

CROP_MARGIN = 0.6  # of the face box, on each side: enough for the matcher to re-detect
JPEG_QUALITY = 92


def crop_face(frame: np.ndarray, face: Face, margin: float = CROP_MARGIN) -> np.ndarray:
    """A copy of the face box widened by ``margin`` on each side, clipped to the frame."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = face.box
    pad_x, pad_y = face.width * margin, face.height * margin
    left, top = max(int(x0 - pad_x), 0), max(int(y0 - pad_y), 0)
    right, bottom = min(int(x1 + pad_x), width), min(int(y1 + pad_y), height)
    return frame[top:bottom, left:right].copy()


def seal_capture(
    transaction: CaptureTransaction,
    frame: np.ndarray,
    face: Face,
    recipient: X25519PublicKey,
    binding: SealBinding,
    *,
    gamma: float = 1.0,
) -> bytearray:
    """Crop, tone (``gamma``), encode and seal to ``binding`` (the header the capture will
    be sent with); every buffer made on the way belongs to ``transaction``."""
    crop = transaction.track(crop_face(frame, face))
    apply_gamma(crop, gamma)
    ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise EncodeError("JPEG encoding of the face crop failed")
    transaction.track(encoded)
    sealed = transaction.track(bytearray(sealed_size(encoded.nbytes)))
    seal_into(
        sealed,
        memoryview(encoded).cast("B"),
        recipient,
        binding,
    )
    transaction.note_sealed(sealed)
    return sealed


__all__ = ["CROP_MARGIN", "JPEG_QUALITY", "crop_face", "seal_capture"]
