"""Synthetic faces and frames for the quality and selection unit tests (no model, no photo).

A ``make_face`` is a level, frontal head (keypoints where a real one has them); a
``make_frame`` is a grey frame with a textured (or flat) patch where the face box is.
"""

from __future__ import annotations

import math

import numpy as np

from appliance.vision.detectors.base import Face

H, W = 240, 320
BOX = (100.0, 60.0, 200.0, 180.0)
RIGHT_EYE, LEFT_EYE = (125.0, 100.0), (175.0, 100.0)  # 50 px apart, level


def make_face(
    box: tuple[float, float, float, float] = BOX,
    right_eye: tuple[float, float] = RIGHT_EYE,
    left_eye: tuple[float, float] = LEFT_EYE,
    score: float = 0.9,
    roll_deg: float = 0.0,
) -> Face:
    x0, y0, x1, y1 = box
    eye_y = (right_eye[1] + left_eye[1]) / 2
    mouth_y = y0 + 0.8 * (y1 - y0)
    keypoints = np.array(
        [
            right_eye,
            left_eye,
            # nose 0.57 of the way from the eye line to the mouth: a level, frontal head
            ((x0 + x1) / 2, eye_y + 0.57 * (mouth_y - eye_y)),
            ((x0 + x1) / 2, mouth_y),  # mouth
            (x0, (y0 + y1) / 2),  # right ear
            (x1, (y0 + y1) / 2),  # left ear
        ],
        dtype=np.float32,
    )
    if roll_deg:
        # Tilt the whole head about the eye midpoint, as a real rolled face looks.
        rad = math.radians(roll_deg)
        rotation = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
        middle = (keypoints[0] + keypoints[1]) / 2
        keypoints = ((keypoints - middle) @ rotation.T + middle).astype(np.float32)
    return Face(score, box, keypoints)


def make_frame(low: int = 60, high: int = 200, flat: int | None = None, seed: int = 1):
    """Grey frame with a textured (or flat) patch where the face box is."""
    frame = np.full((H, W, 3), 118, np.uint8)
    x0, y0, x1, y1 = (int(v) for v in BOX)
    if flat is not None:
        frame[y0:y1, x0:x1] = flat
    else:
        rng = np.random.default_rng(seed)
        patch = rng.integers(low, high, size=(y1 - y0, x1 - x0, 1), dtype=np.uint8)
        frame[y0:y1, x0:x1] = np.repeat(patch, 3, axis=2)
    return frame
