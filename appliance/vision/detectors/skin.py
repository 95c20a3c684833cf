"""Not the traveller: a detection whose middle has colours no skin has.

BlazeFace answers for face-like shapes, whatever their colours. On the scene bench it
found a face in skimage's colour wheel among the clutter images (the short-range model,
scores 0.52-0.69 over 30 frames), and that "face" was sharp and frontal enough to pass
every quality measure and be sent. Two measures of the middle half of the box (cheeks,
nose, eyes), both taken from the light's own colour cast (the scene's mean colour), so
amber or red lighting does not make every face "colourful":

- Colourfulness, Hasler and Süsstrunk's measure ("Measuring colourfulness in natural
  images", 2003): the spread and the mean of the two opponent channels. faces-dev's 1223
  detected faces (press photos, as they are and pasted on a grey 720p canvas) reach at
  most 80.1 (median 30); the wheel is at least 95.5 in every frame of that scene.
- Skin's hues: the share of the coloured pixels whose hue lies between red and orange. A
  camera with its saturation turned up, or red and blue light from either side, makes a
  face as colourful as the wheel, but its hues stay skin's; a wheel's spread round the
  circle, so the warm part of a wheel turned towards the camera still has few of them.

A detection that is too colourful and has too few of skin's hues is never the traveller: the
tracker does not follow it and the selector does not measure or send it
(``appliance.vision.selection``). It is still a face found, so it still counts as someone
else in view (a companion, someone nearer, a lane that is not clear): paint on a second
person's face must not hide them from those rules.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.vision.detectors.base import Face, face_region
from gate_contract.image_noise import middle_half

MAX_SKIN_COLOURFULNESS = 85.0  # a middle more colourful than this is not skin ...
MIN_SKIN_HUE_SHARE = 0.25  # ... unless this share of its coloured pixels has skin's hues
# Skin's hues: degrees on the opponent plane (0 red-magenta, 90 yellow), around orange.
SKIN_HUES = (25.0, 65.0)
_MIN_CHROMA = 12.0  # a pixel nearer the cast than this has no colour worth counting
_NO_LIMIT = 1e9
_SAMPLE_PX = 48  # the middle is read on about this many pixels a side
_SCENE_STEP = 16  # the scene's colour cast is read on every 16th pixel each way


def _opponent_planes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The red-green and yellow-blue opponent planes of a BGR uint8 image (float32), and
    every buffer made on the way: derived from face pixels, all to be zeroized."""
    pixels = image.astype(np.float32)
    channels = cv2.split(pixels)
    blue, green, red = channels
    red_green = cv2.subtract(red, green)
    yellow = cv2.addWeighted(red, 0.5, green, 0.5, 0.0)
    yellow_blue = cv2.subtract(yellow, blue)
    return red_green, yellow_blue, [pixels, *channels, red_green, yellow, yellow_blue]


def _wipe(buffers: list[np.ndarray]) -> None:
    for buffer in buffers:
        buffer.fill(0)


def _opponent(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations of the two opponent channels of a BGR uint8 image
    (each a 2-vector)."""
    red_green, yellow_blue, made = _opponent_planes(image)
    opponent = cv2.merge([red_green, yellow_blue])
    try:
        mean, spread = cv2.meanStdDev(opponent)
    finally:
        _wipe([*made, opponent])
    return mean[:, 0], spread[:, 0]


def mean_opponent(image: np.ndarray) -> np.ndarray:
    """The mean red-green and yellow-blue of a BGR uint8 image (a 2-vector)."""
    return _opponent(image)[0]


def scene_cast(frame: np.ndarray) -> np.ndarray:
    """The frame's mean opponent colour: the light's cast (near 0 under white light)."""
    return mean_opponent(frame[::_SCENE_STEP, ::_SCENE_STEP])


def colourfulness(image: np.ndarray, cast: np.ndarray | None = None) -> float:
    """Hasler-Süsstrunk colourfulness of a BGR uint8 image (0: grey; vivid scenes 100+);
    with ``cast``, its mean colour is measured from the scene's, not from grey."""
    if image.size == 0:
        return 0.0
    mean, spread = _opponent(image)
    if cast is not None:
        mean = mean - cast
    return float(np.hypot(*spread) + 0.3 * np.hypot(*mean))


def skin_hue_share(image: np.ndarray, cast: np.ndarray) -> float:
    """The share of a BGR uint8 image's coloured pixels whose hue, seen from the scene's
    ``cast``, is one skin has (``SKIN_HUES``; 1.0 when no pixel has a colour at all)."""
    red_green, yellow_blue, made = _opponent_planes(image)
    red_green -= np.float32(cast[0])
    yellow_blue -= np.float32(cast[1])
    chroma, hue = cv2.cartToPolar(red_green, yellow_blue, angleInDegrees=True)
    coloured = cv2.inRange(chroma, _MIN_CHROMA, _NO_LIMIT)
    skin_hued = cv2.inRange(hue, *SKIN_HUES)
    try:
        cv2.bitwise_and(skin_hued, coloured, dst=skin_hued)
        total = cv2.countNonZero(coloured)
        return cv2.countNonZero(skin_hued) / total if total else 1.0
    finally:
        _wipe([*made, chroma, hue, coloured, skin_hued])


def skin_coloured(frame: np.ndarray, face: Face, cast: np.ndarray | None = None) -> bool:
    """Could the middle of ``face``'s box in ``frame`` be skin (not too colourful, or
    vivid in skin's own colours)?
    ``cast``: ``scene_cast(frame)``, measured here if not given."""
    middle = middle_half(face_region(frame, face))
    if middle.size == 0:
        return True  # nothing to judge by
    step = max(1, min(middle.shape[:2]) // _SAMPLE_PX)
    cast = scene_cast(frame) if cast is None else cast
    sample = middle[::step, ::step]
    if colourfulness(sample, cast) <= MAX_SKIN_COLOURFULNESS:
        return True
    return skin_hue_share(sample, cast) >= MIN_SKIN_HUE_SHARE  # vivid, but in skin's hues


def only_skin(frame: np.ndarray, faces: list[Face]) -> list[Face]:
    """``faces`` without the detections that cannot be skin (grey frames pass as they are)."""
    if not faces or frame.ndim != 3 or frame.shape[2] != 3:
        return faces
    cast = scene_cast(frame)
    return [face for face in faces if skin_coloured(frame, face, cast)]


__all__ = [
    "MAX_SKIN_COLOURFULNESS",
    "MIN_SKIN_HUE_SHARE",
    "SKIN_HUES",
    "colourfulness",
    "mean_opponent",
    "only_skin",
    "scene_cast",
    "skin_coloured",
    "skin_hue_share",
]
