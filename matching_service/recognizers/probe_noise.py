"""Smoothing for noisy faces, before a recognizer reads them.

A gate camera in a dim hall runs at high gain, and its noise of several grey levels is
read by both recognizers' landmark finders and networks as skin texture. A slight blur
of such an image, before landmarks and alignment, brought 90-95 % of the capture bench's
noisy captures nearer their owner's template (median 0.045 in distance, seeds 23 and
31) and left impostors as far as they were (README, *Right person*). Clean images are
never touched: faces-dev's photos estimate at most 2.4 grey levels, below
``NOISY_SIGMA``, so their templates, and the thresholds calibrated on them, stay bit for
bit what they were.
"""

from __future__ import annotations

import cv2
import numpy as np

from gate_contract import image_noise

NOISY_SIGMA = 3.0  # grey levels; the bench's high-gain captures measure 3.5-8.7
SMOOTHING_SIGMA_PX = 1.0


def noise_sigma(image_bgr: np.ndarray) -> float:
    """Estimated noise of the whole image's grey levels."""
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    try:
        return image_noise.noise_sigma(grey)
    finally:
        grey.fill(0)


def smoothed_if_noisy(image_bgr: np.ndarray) -> np.ndarray | None:
    """A smoothed copy of a noisy image (the caller zeroizes it), or ``None`` if clean."""
    if noise_sigma(image_bgr) < NOISY_SIGMA:
        return None
    return cv2.GaussianBlur(image_bgr, (0, 0), SMOOTHING_SIGMA_PX)


__all__ = ["NOISY_SIGMA", "SMOOTHING_SIGMA_PX", "noise_sigma", "smoothed_if_noisy"]
