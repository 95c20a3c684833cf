"""Exposure correction: one global tone curve (a gamma) for under-exposed faces.

A backlit traveller or a dim hall gives a face whose mean grey is far below the middle
of the range while the camera's exposure is set by the bright scene around it. A gamma
below 1 lifts the dark levels and leaves black and white where they are: a documented,
whole-image tone change, as a camera's exposure compensation would make, with no local
retouching (no CLAHE, no sharpening) of what the matcher compares.

It is used three ways, always on copies that are zeroized after use: on the detector's
small input image, where the tracker looks for a face in shadow; on the face region the
quality gate measures (``face_gamma``); and, for a frame accepted with a correction, on
the face crop that is sealed and sent (``apply_gamma``), so the matcher sees what was
measured.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MIN_GAMMA = 0.4
# A face is corrected when its mean grey is in this band: below it there is too little
# signal to lift (noise), above it the face is exposed well enough.
DARK_FACE_MEAN = (15.0, 70.0)
TARGET_FACE_MEAN = 115.0

_LUTS: dict[float, np.ndarray] = {}


def _lut(gamma: float) -> np.ndarray:
    key = round(gamma, 2)
    if key not in _LUTS:
        levels = (np.arange(256) / 255.0) ** key * 255 + 0.5
        _LUTS[key] = np.clip(levels, 0, 255).astype(np.uint8)
    return _LUTS[key]


def face_gamma(mean_grey: float) -> float:
    """The gamma that brings a dark face's mean grey to about 115 (1.0: leave it)."""
    low, high = DARK_FACE_MEAN
    if not low <= mean_grey < high:
        return 1.0
    gamma = math.log(TARGET_FACE_MEAN / 255) / math.log(mean_grey / 255)
    return round(min(1.0, max(MIN_GAMMA, gamma)), 2)


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``image`` (uint8) through the tone curve, in place; returns it."""
    if gamma != 1.0:
        cv2.LUT(image, _lut(gamma), dst=image)
    return image


__all__ = ["DARK_FACE_MEAN", "MIN_GAMMA", "TARGET_FACE_MEAN", "apply_gamma", "face_gamma"]
