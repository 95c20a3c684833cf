"""Not a face: a detection whose middle has colours no skin has.

BlazeFace answers for face-like shapes, whatever their colours. On the scene bench it
found a face in skimage's colour wheel among the clutter images (the short-range model,
scores 0.52-0.69 over 30 frames), and that "face" was sharp and frontal enough to pass
every quality measure and be sent. Skin, in any light a gate camera sees, is a narrow
band of hues, so the middle half of a real face's box (cheeks, nose, eyes) is never very
colourful. Colourfulness is Hasler and Süsstrunk's measure ("Measuring colourfulness in
natural images", 2003): the spread and the mean of the two opponent channels. Measured:
the 634 faces the full-range model finds in faces-dev's photos (press photos, more
saturated than a gate camera's) reach at most 66.7 (median 33), the 270 faces the scene
bench sent (three seeds) at most 54, and the colour wheel is at least 84.8 in every frame it scored
0.5 or more. A detection above ``MAX_SKIN_COLOURFULNESS`` is dropped by the detectors
(``onnx_runtime``, ``mediapipe_tasks``), so it is neither followed nor sent.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.vision.detectors.base import Face
from gate_contract.image_noise import middle_half

MAX_SKIN_COLOURFULNESS = 75.0
_SAMPLE_PX = 48  # the middle is read on about this many pixels a side


def colourfulness(image: np.ndarray) -> float:
    """Hasler-Süsstrunk colourfulness of a BGR uint8 image (0: grey; vivid scenes 100+)."""
    if image.size == 0:
        return 0.0
    pixels = image.astype(np.float32)
    channels = cv2.split(pixels)
    blue, green, red = channels
    red_green = cv2.subtract(red, green)
    yellow_blue = cv2.subtract(cv2.addWeighted(red, 0.5, green, 0.5, 0.0), blue)
    opponent = cv2.merge([red_green, yellow_blue])
    try:
        mean, spread = cv2.meanStdDev(opponent)
    finally:
        for derived in (pixels, *channels, red_green, yellow_blue, opponent):
            derived.fill(0)  # derived from face pixels: zeroized like them
    return float(np.hypot(*spread[:, 0]) + 0.3 * np.hypot(*mean[:, 0]))


def skin_coloured(frame: np.ndarray, face: Face) -> bool:
    """Could the middle of ``face``'s box in ``frame`` be skin (not too colourful)?"""
    height, width = frame.shape[:2]
    x0, y0 = max(int(face.box[0]), 0), max(int(face.box[1]), 0)
    x1, y1 = min(int(face.box[2]), width), min(int(face.box[3]), height)
    middle = middle_half(frame[y0:y1, x0:x1])
    step = max(1, min(middle.shape[:2]) // _SAMPLE_PX)
    return colourfulness(middle[::step, ::step]) <= MAX_SKIN_COLOURFULNESS


def only_skin(frame: np.ndarray, faces: list[Face]) -> list[Face]:
    """``faces`` without the detections that cannot be skin (grey frames pass as they are)."""
    if not faces or frame.ndim != 3 or frame.shape[2] != 3:
        return faces
    return [face for face in faces if skin_coloured(frame, face)]


__all__ = ["MAX_SKIN_COLOURFULNESS", "colourfulness", "only_skin", "skin_coloured"]
