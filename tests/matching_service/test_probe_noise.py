"""Noisy faces are smoothed before a recognizer reads them; clean ones are left alone."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from matching_service.errors import NoFaceFound
from matching_service.recognizers import RECOGNIZERS
from matching_service.recognizers.probe_noise import (
    NOISY_SIGMA,
    SMOOTHING_SIGMA_PX,
    noise_sigma,
    smoothed_if_noisy,
)
from tests.support import require_recognizer


@pytest.fixture(scope="module", params=RECOGNIZERS)
def recognizer(request):
    return require_recognizer(request.param)


def with_noise(image: np.ndarray, sigma: float, seed: int = 5) -> np.ndarray:
    """Grey-level noise of ``sigma`` (the same in every channel, as the estimate reads it)."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, (*image.shape[:2], 1))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def shading() -> np.ndarray:
    """A smooth image with no noise: a diagonal ramp and a soft disc."""
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    grey = 40 + 0.4 * xx + 0.2 * yy + 60 * np.exp(-((xx - 160) ** 2 + (yy - 120) ** 2) / 4000)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


@pytest.mark.parametrize("sigma", [2.0, 4.0, 8.0])
def test_the_estimate_reads_the_noise_not_the_shading(sigma):
    assert noise_sigma(shading()) < 0.5
    assert noise_sigma(with_noise(shading(), sigma)) == pytest.approx(sigma, rel=0.2)


def test_tiny_images_have_no_estimate():
    assert noise_sigma(np.full((2, 2, 3), 200, np.uint8)) == 0.0


def test_clean_photos_are_not_touched(demo_photos):
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        photo = cv2.imread(str(demo_photos / name))
        assert noise_sigma(photo) < NOISY_SIGMA, name
        assert smoothed_if_noisy(photo) is None


def test_a_noisy_image_is_smoothed_into_a_copy():
    noisy = with_noise(shading(), 8.0)
    before = noisy.copy()
    smoothed = smoothed_if_noisy(noisy)
    assert smoothed is not None and smoothed is not noisy
    assert noise_sigma(smoothed) < NOISY_SIGMA
    assert np.array_equal(noisy, before), "the caller's image is left as it was"


def test_a_noisy_face_is_read_smoothed(recognizer, demo_photos, monkeypatch):
    photo = cv2.imread(str(demo_photos / "obama2.jpg"))
    face = cv2.resize(photo, (300, round(300 * photo.shape[0] / photo.shape[1])))
    noisy = with_noise(face, 8.0)
    read = recognizer.encode(noisy.copy())
    monkeypatch.setattr(
        sys.modules[type(recognizer).__module__], "smoothed_if_noisy", lambda _: None
    )
    smoothed = cv2.GaussianBlur(noisy, (0, 0), SMOOTHING_SIGMA_PX)
    assert np.allclose(read, recognizer.encode(smoothed), atol=1e-5)
    assert not np.allclose(read, recognizer.encode(noisy), atol=1e-3)


def test_the_smoothed_copy_is_zeroized(recognizer, monkeypatch):
    made: list[np.ndarray] = []
    real = cv2.GaussianBlur

    def tracked(*args, **kwargs):
        out = real(*args, **kwargs)
        made.append(out)
        return out

    monkeypatch.setattr(cv2, "GaussianBlur", tracked)
    with pytest.raises(NoFaceFound):  # the shading has no face: the copy is wiped all the same
        recognizer.encode(with_noise(shading(), 8.0))
    assert made and all(not copy.any() for copy in made)
