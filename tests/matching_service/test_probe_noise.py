"""Noisy faces wide enough are smoothed before a recognizer reads them; others are not."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from matching_service.errors import NoFaceFound
from matching_service.recognizers.probe_noise import (
    MIN_FACE_PX,
    NOISY_SIGMA,
    face_noise,
    smoothed_if_noisy,
)
from tests.support import record_outputs


def with_noise(image: np.ndarray, sigma: float, seed: int = 5) -> np.ndarray:
    """Grey-level noise of ``sigma`` (the same in every channel, as the estimate reads it)."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, (*image.shape[:2], 1))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def shading(height: int = 240, width: int = 320) -> np.ndarray:
    """A smooth image with no noise: a ramp and a soft disc."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = 60 * np.exp(-((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / 4000)
    grey = 40 + 0.4 * xx + 0.2 * yy + disc
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def photo_at(demo_photos, name: str, width: int) -> np.ndarray:
    photo = cv2.imread(str(demo_photos / name))
    height = round(width * photo.shape[0] / photo.shape[1])
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)


WHOLE = (0.0, 0.0, 320.0, 240.0)


def test_a_wide_noisy_face_is_smoothed_into_a_copy():
    noisy = with_noise(shading(), 8.0)
    before = noisy.copy()
    smoothed = smoothed_if_noisy(noisy, WHOLE)
    assert smoothed is not None and smoothed is not noisy
    assert face_noise(smoothed, WHOLE) < NOISY_SIGMA <= face_noise(noisy, WHOLE)
    assert np.array_equal(noisy, before), "the caller's image is left as it was"


def test_a_clean_face_is_read_as_it_is():
    assert smoothed_if_noisy(shading(), WHOLE) is None


def test_a_face_narrower_than_the_limit_is_read_as_it_is():
    noisy = with_noise(shading(), 8.0)
    assert smoothed_if_noisy(noisy, (10.0, 10.0, 10.0 + MIN_FACE_PX - 1, 200.0)) is None
    assert smoothed_if_noisy(noisy, (10.0, 10.0, 10.0 + MIN_FACE_PX, 200.0)) is not None


def test_noise_outside_the_face_does_not_count():
    """A patterned collar or background around a clean face does not trigger smoothing."""
    image = with_noise(shading(), 12.0)
    box = (100.0, 40.0, 220.0, 200.0)
    image[40:200, 100:220] = shading()[40:200, 100:220]
    assert smoothed_if_noisy(image, box) is None


def test_only_the_middle_of_the_face_counts():
    """Hair and the face's edges (the box's outer ring) are not read as noise."""
    image = with_noise(shading(), 12.0)
    image[80:160, 130:190] = shading()[80:160, 130:190]  # the middle half of the box
    assert smoothed_if_noisy(image, (100.0, 40.0, 220.0, 200.0)) is None


def test_a_box_past_the_image_edges_is_measured_inside_it():
    image = shading()
    image[50:150, 50:150] = with_noise(shading(), 12.0)[50:150, 50:150]
    # clipped to (0, 0, 200, 200): its middle half is the noisy square
    assert smoothed_if_noisy(image, (-100.0, -100.0, 200.0, 200.0)) is not None


def test_a_box_wholly_outside_the_image_has_no_noise():
    assert face_noise(with_noise(shading(), 12.0), (400.0, 300.0, 520.0, 420.0)) == 0.0


def test_clean_photos_are_not_touched(demo_photos):
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        photo = cv2.imread(str(demo_photos / name))
        height, width = photo.shape[:2]
        assert smoothed_if_noisy(photo, (0.0, 0.0, float(width), float(height))) is None, name


def _without_smoothing(recognizer, monkeypatch) -> None:
    module = sys.modules[type(recognizer).__module__]
    monkeypatch.setattr(module, "smoothed_if_noisy", lambda image, box: None)


def test_a_wide_noisy_face_is_read_smoothed(recognizer, demo_photos, monkeypatch):
    noisy = with_noise(photo_at(demo_photos, "obama2.jpg", 400), 8.0)  # face ~190-220 px
    read = recognizer.encode(noisy.copy())
    _without_smoothing(recognizer, monkeypatch)
    assert not np.allclose(read, recognizer.encode(noisy), atol=1e-3)


def test_a_narrow_noisy_face_is_read_as_it_is(recognizer, demo_photos, monkeypatch):
    noisy = with_noise(photo_at(demo_photos, "obama2.jpg", 170), 8.0)  # face ~90 px
    read = recognizer.encode(noisy.copy())
    _without_smoothing(recognizer, monkeypatch)
    assert np.array_equal(read, recognizer.encode(noisy))


@pytest.mark.parametrize("width", [400, 1000])  # 1000: dlib's resized copy too
def test_every_copy_is_zeroized(recognizer, demo_photos, monkeypatch, width):
    """The smoothed copy, its grey measure and its RGB copy are wiped, face or no face."""
    noisy = with_noise(photo_at(demo_photos, "obama2.jpg", width), 8.0)
    no_face = with_noise(shading(), 8.0)
    smoothed = record_outputs(monkeypatch, cv2, "GaussianBlur")
    made = record_outputs(monkeypatch, cv2, "cvtColor", "filter2D", "resize")
    recognizer.encode(noisy)
    with pytest.raises(NoFaceFound):
        recognizer.encode(no_face)
    assert smoothed, "the face was smoothed"
    pixels = [a for a in smoothed + made if isinstance(a, np.ndarray) and a.size >= 32 * 32]
    assert all(not a.any() for a in pixels), [a.shape for a in pixels if a.any()]
    assert noisy.any(), "the caller's image stays the caller's to zeroize"


def test_copies_are_zeroized_when_landmarks_fail(recognizer, demo_photos, monkeypatch):
    noisy = with_noise(photo_at(demo_photos, "obama2.jpg", 400), 8.0)
    smoothed = record_outputs(monkeypatch, cv2, "GaussianBlur")
    made = record_outputs(monkeypatch, cv2, "cvtColor", "filter2D", "resize")

    def failing(*args):
        raise RuntimeError("landmarks failed")

    monkeypatch.setattr(recognizer, "_shapes", failing)
    with pytest.raises(RuntimeError, match="landmarks failed"):
        recognizer.encode(noisy)
    assert smoothed, "the face was smoothed"
    pixels = [a for a in smoothed + made if isinstance(a, np.ndarray) and a.size >= 32 * 32]
    assert all(not a.any() for a in pixels), [a.shape for a in pixels if a.any()]


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((120, 120), np.uint8),
        np.zeros((120, 120, 4), np.uint8),
        np.zeros((120, 120, 3), np.uint16),
        np.zeros((120, 120, 3), np.float32),
    ],
    ids=["grey", "four channels", "16-bit", "float"],
)
def test_anything_but_8_bit_colour_is_a_clear_refusal(recognizer, image):
    with pytest.raises(NoFaceFound, match="colour"):
        recognizer.encode(image)
