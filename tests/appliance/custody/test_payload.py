"""The sealed payload: the face crop, through the tone curve it was measured with."""

from __future__ import annotations

import cv2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.custody.payload import seal_capture
from appliance.custody.transaction import CaptureTransaction
from appliance.vision.tone import apply_gamma
from gate_contract.sealing import SealBinding, open_sealed
from tests.appliance.vision.faces import make_face, make_frame


def sent_image(frame: np.ndarray, gamma: float) -> np.ndarray:
    key = X25519PrivateKey.generate()
    tx = CaptureTransaction("gate-dev-0001")
    binding = SealBinding(tx.capture_id, tx.device_id)
    sealed = seal_capture(tx, frame, make_face(), key.public_key(), binding, gamma=gamma)
    plain = open_sealed(sealed, key, binding)
    image = cv2.imdecode(np.frombuffer(bytes(plain), np.uint8), cv2.IMREAD_COLOR)
    tx.purge("test", "done")
    assert not any(sealed), "the purge reaches the sealed payload"
    return image


def test_a_frame_accepted_with_exposure_correction_is_sent_through_its_curve() -> None:
    frame = make_frame(low=15, high=60)
    before = frame.copy()
    plain, lifted = sent_image(frame, 1.0), sent_image(frame, 0.5)
    assert plain.shape == lifted.shape
    assert lifted.mean() > plain.mean() + 30
    assert np.array_equal(frame, before), "the camera frame is not changed"
    # The same crop through the one global curve (no local retouching), up to JPEG noise.
    expected = apply_gamma(plain.copy(), 0.5)
    assert np.abs(expected.astype(int) - lifted.astype(int)).mean() < 4
