"""Smoothing for noisy faces, before a recognizer aligns and reads them.

A gate camera in a dim hall runs at high gain, and both recognizers read its noise of
several grey levels as skin texture. When the face found is noisy and wide enough to
spare detail, the image is blurred slightly before landmarks and alignment. On the
capture bench (faces-dev scenes) that brings noisy captures nearer their owner's
template and leaves impostors where they were. A face narrower than ``MIN_FACE_PX``
(about the recognizers' 112 px chip) is read as it is: there the same blur takes away
detail the recognizer needs (README, *Right person*). The noise is measured where the
gate measures it, in the middle of the face, so a patterned collar or background does
not trigger it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from gate_contract import image_noise

NOISY_SIGMA = 3.0  # grey levels in the face's middle; faces-dev's photos: 99 % below 2.0
MIN_FACE_PX = 100  # the face box's width; narrower faces have no detail to spare
SMOOTHING_SIGMA_PX = 1.0

Box = tuple[float, float, float, float]


def face_noise(image_bgr: np.ndarray, box: Box) -> float:
    """Noise in the middle half of the face box's part inside the image, in grey levels."""
    height, width = image_bgr.shape[:2]
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    if x1 <= x0 or y1 <= y0:
        return 0.0
    grey = cv2.cvtColor(image_noise.middle_half(image_bgr[y0:y1, x0:x1]), cv2.COLOR_BGR2GRAY)
    try:
        return image_noise.noise_sigma(grey)
    finally:
        grey.fill(0)


def smoothed_if_noisy(image_bgr: np.ndarray, box: Box) -> np.ndarray | None:
    """A smoothed copy of the image when the face in ``box`` is wide and noisy (the caller
    zeroizes it), else ``None``."""
    if box[2] - box[0] < MIN_FACE_PX or face_noise(image_bgr, box) < NOISY_SIGMA:
        return None
    return cv2.GaussianBlur(image_bgr, (0, 0), SMOOTHING_SIGMA_PX)


__all__ = [
    "MIN_FACE_PX",
    "NOISY_SIGMA",
    "SMOOTHING_SIGMA_PX",
    "Box",
    "face_noise",
    "smoothed_if_noisy",
]
