"""The noise estimate reads a camera's noise, not a face's shading."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gate_contract.image_noise import noise_sigma
from tests.support import record_outputs


def ramp_and_disc(height: int = 240, width: int = 320) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = 60 * np.exp(-((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / 4000)
    return (40 + 0.4 * xx + 0.2 * yy + disc).astype(np.uint8)


@pytest.mark.parametrize("sigma", [2.0, 4.0, 8.0])
def test_the_estimate_reads_the_noise_not_the_shading(sigma):
    clean = ramp_and_disc()
    noisy = np.clip(clean + np.random.default_rng(3).normal(0, sigma, clean.shape), 0, 255)
    assert noise_sigma(clean) < 0.5
    assert noise_sigma(noisy.astype(np.uint8)) == pytest.approx(sigma, rel=0.15)


def test_a_view_reads_as_its_copy():
    noisy = np.random.default_rng(4).integers(90, 160, (200, 300), dtype=np.uint8)
    view = noisy[37:161, 55:240]
    assert noise_sigma(view) == noise_sigma(view.copy())


@pytest.mark.parametrize("shape", [(2, 2), (1, 50), (50, 2), (0, 0)])
def test_images_too_small_to_measure_have_no_noise(shape):
    assert noise_sigma(np.full(shape, 200, np.uint8)) == 0.0


def test_its_filter_response_is_zeroized(monkeypatch):
    made = record_outputs(monkeypatch, cv2, "filter2D")
    noise_sigma(np.random.default_rng(5).integers(0, 255, (64, 64), dtype=np.uint8))
    assert made and not made[0].any()
