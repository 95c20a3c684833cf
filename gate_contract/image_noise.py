"""A face's sensor noise in grey levels, as both programs measure it.

Both measure it in the middle of a face: the gate on the face it sends (a face noisier
than 2 grey levels must come nearer before a retake), the matcher on the face it
receives (one noisier than 3 is smoothed before its recognizer reads it). Immerkær's
operator ("Fast noise variance estimation", CVIU 1996) is the difference of two
Laplacians: blind to smooth shading and, at first order, to edges, so what it sees in a
face is mostly the camera's noise.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def middle_half(face: np.ndarray) -> np.ndarray:
    """The middle half of a face crop (cheeks, nose, eyes: no hairline), a view."""
    height, width = face.shape[:2]
    return face[height // 4 : height - height // 4, width // 4 : width - width // 4]


def noise_sigma(gray: np.ndarray) -> float:
    """Estimated standard deviation of the noise in ``gray`` (2-D uint8), in grey levels."""
    height, width = gray.shape
    if height < 3 or width < 3:
        return 0.0
    response = cv2.filter2D(gray, cv2.CV_16S, _IMMERKAER)  # integers within +-4080
    try:
        total = cv2.norm(response[1:-1, 1:-1], cv2.NORM_L1)
    finally:
        response.fill(0)  # derived from face pixels: zeroized like them
    return math.sqrt(math.pi / 2) * total / (6 * (height - 2) * (width - 2))


__all__ = ["middle_half", "noise_sigma"]
