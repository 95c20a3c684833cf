"""Light and the camera: linear light, the sensor's noise, the MJPEG encoder.

Scenes are composed in linear light (what a sensor counts), then go through what a gate
camera does: saturation, signal-dependent noise (shot noise grows with the gain and the
signal, read noise with the gain), the sRGB tone curve to 8 bits, and the camera's own
MJPEG encoder at its JPEG quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FPS = 30
WIDTH, HEIGHT = 1280, 720
FOCAL_PX = 800.0  # about 77 degrees of horizontal field of view at 1280 px
AE_TARGET = 0.2  # the auto-exposure's centre-weighted mean, linear (about 124 in sRGB)


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(np.asarray(v, np.float64), 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


TO_LINEAR = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)  # uint8 -> linear
_BINS = 65535
_TO_SRGB_FLOAT = (_linear_to_srgb(np.arange(_BINS + 1) / _BINS) * 255).astype(np.float32)
_TO_SRGB_U8 = np.round(_TO_SRGB_FLOAT).astype(np.uint8)


def to_linear(image: np.ndarray) -> np.ndarray:
    """8-bit sRGB -> linear float32."""
    return TO_LINEAR[image]


def encode(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] (clipped in place) -> 8-bit sRGB."""
    np.clip(linear, 0.0, 1.0, out=linear)
    return _TO_SRGB_U8[(linear * _BINS).astype(np.uint16)]


def encode_float(linear: np.ndarray) -> np.ndarray:
    """Linear -> sRGB levels 0..255 as floats (no rounding)."""
    return _TO_SRGB_FLOAT[(np.clip(linear, 0.0, 1.0) * _BINS).astype(np.uint16)]


def luma(linear_bgr: np.ndarray) -> np.ndarray:
    return linear_bgr[..., 0] * 0.0722 + linear_bgr[..., 1] * 0.7152 + linear_bgr[..., 2] * 0.2126


@dataclass
class Camera:
    """One gate camera's exposure, sensor and encoder settings for a scene."""

    exposure_s: float = 1 / 100
    max_exposure_gain: float = 8.0  # longest shutter x highest gain, relative to normal light
    shot: float = 0.0002  # shot-noise variance per unit signal at gain 1 (1 / full well)
    read: float = 0.0006  # read-noise standard deviation at gain 1
    gain_extra: float = 1.0  # sensor gain on top of what the exposure needs (noisy sensors)
    jpeg_quality: int = 88
    glare: float = 0.0  # veiling glare from bright areas (backlight)
    psf: float = 0.7  # lens and demosaicing blur (Gaussian sigma, px)


# Noise: a few standard-normal fields, made once per seed and combined differently in
# each frame, so every frame has its own noise without drawing 2.7 M numbers per frame.
_NOISE_COMBINATIONS = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
_FIELDS: dict[int, list[np.ndarray]] = {}


def noise_fields(seed: int, count: int = 3) -> list[np.ndarray]:
    """``count`` standard-normal fields, slightly correlated in space and across channels
    (int8, scaled by 32), shared by every scene of a seed."""
    if seed in _FIELDS:
        return _FIELDS[seed]
    rng = np.random.default_rng([seed, 7919])
    fields = []
    for _ in range(count):
        field = rng.standard_normal((HEIGHT, WIDTH, 3), dtype=np.float32)
        field = cv2.GaussianBlur(field, (3, 3), 0.6)
        field = 0.6 * field + 1.2 * field.mean(axis=2, keepdims=True)
        field *= 1.0 / float(field[::7, ::7].std())
        fields.append(np.clip(np.round(field * 32), -127, 127).astype(np.int8))
    _FIELDS[seed] = fields
    return fields


def noise_combinations() -> int:
    return len(_NOISE_COMBINATIONS)


def combined_noise(
    fields: list[np.ndarray], which: int, region: tuple[slice, slice] = (slice(None), slice(None))
) -> np.ndarray:
    """Standard-normal noise (float32) for combination ``which`` of ``fields`` in ``region``."""
    combination = _NOISE_COMBINATIONS[which]
    out = fields[combination[0]][region].astype(np.float32)
    for index in combination[1:]:
        out += fields[index][region]
    out *= 1.0 / (32.0 * math.sqrt(len(combination)))
    return out


class MjpegWriter:
    """MJPG AVI through OpenCV, with the camera's JPEG quality under control.

    The camera's MJPEG encoder is libjpeg (``cv2.imencode``) at ``quality``; OpenCV's
    FFmpeg writer stores those JPEG frames unchanged (``VIDEOWRITER_PROP_RAW_VIDEO``).
    Where that mode is missing, OpenCV's own MJPEG writer encodes at ``quality``.
    """

    def __init__(self, path: Path, quality: int) -> None:
        self.quality = int(quality)
        fourcc = cv2.VideoWriter_fourcc(*"MJPG")
        size = (WIDTH, HEIGHT)
        self.raw = True
        self._writer = cv2.VideoWriter(
            str(path), cv2.CAP_FFMPEG, fourcc, FPS, size, [cv2.VIDEOWRITER_PROP_RAW_VIDEO, 1]
        )
        if not self._writer.isOpened():
            self.raw = False
            self._writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, FPS, size)
            if not self._writer.isOpened():
                raise OSError(f"cannot write a video at {path}")
            self._writer.set(cv2.VIDEOWRITER_PROP_QUALITY, self.quality)

    def write(self, frame: np.ndarray) -> None:
        if not self.raw:
            self._writer.write(frame)
            return
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise OSError("JPEG encoding of a scene frame failed")
        self._writer.set(cv2.VIDEOWRITER_PROP_KEY_FLAG, 1)
        self._writer.write(jpeg.reshape(1, -1))
        jpeg.fill(0)

    def close(self) -> None:
        self._writer.release()


__all__ = [
    "AE_TARGET",
    "FOCAL_PX",
    "FPS",
    "TO_LINEAR",
    "Camera",
    "MjpegWriter",
    "combined_noise",
    "encode",
    "encode_float",
    "luma",
    "noise_combinations",
    "noise_fields",
    "to_linear",
]
