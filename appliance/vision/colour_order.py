"""Has the camera swapped red and blue? Told from the faces the gate sends.

A driver or format change can swap a camera's red and blue (libcamera's ``RGB888`` is
B, G, R in memory, and picamera2's issues #848 and #1325 are reports of the swap):
every face then looks blue, the skin rule still lets it through, the matcher's scores
fall (MobileFaceNet reads a channel-swapped face at cosine 0.895 of the right one) and
nothing says why. Skin's hue, seen from the scene's own colour cast on the opponent
plane (``appliance.vision.detectors.skin``), lay at 28-65 degrees for 98 % of 293
faces-dev faces (1st to 99th percentile) and at 229-269 degrees for the same faces with
red and blue swapped. So ``ColourOrderWatch`` counts the faces sent in a row whose hue
is on the blue side (``BLUE_SIDE``) and logs one warning when ``SWAPPED_RUN`` of them
have been; a face of skin's hue (``SKIN_FACE_HUES``) ends the run. A face with too
little colour to tell (a dim hall, a grey camera) or of some other hue (green light)
counts neither way. Only a count is kept, never pixels, and the warning names no hue:
it is about the camera, not about whoever stood in front of it.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from appliance.vision.detectors.base import Face, face_region
from appliance.vision.detectors.skin import mean_opponent, scene_cast
from gate_contract.image_noise import middle_half

log = logging.getLogger("gate.camera")

BLUE_SIDE = (150.0, 330.0)  # degrees on the opponent plane: skin with red and blue swapped
SKIN_FACE_HUES = (15.0, 80.0)  # a face's mean hue as it is (28-65 on faces-dev, with margin)
MIN_CHROMA = 4.0  # a face's mean colour nearer the scene's cast than this tells nothing
SWAPPED_RUN = 5  # faces sent in a row on the blue side before the warning


def face_hue(frame: np.ndarray, face: Face) -> float | None:
    """The hue (degrees, 0 red, 90 yellow) of the middle of ``face`` seen from the
    frame's colour cast; None for a grey frame or a face with too little colour."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        return None
    middle = middle_half(face_region(frame, face))
    if middle.size == 0:
        return None
    red_green, yellow_blue = mean_opponent(middle) - scene_cast(frame)
    if math.hypot(red_green, yellow_blue) < MIN_CHROMA:
        return None
    return math.degrees(math.atan2(yellow_blue, red_green)) % 360.0


class ColourOrderWatch:
    """Warns once when the faces sent keep looking as if red and blue were swapped."""

    def __init__(self, run: int = SWAPPED_RUN) -> None:
        self.run = run
        self.blue_in_a_row = 0
        self.warned = False

    def observe(self, frame: np.ndarray, face: Face) -> None:
        """Count one face sent (its frame is read, not kept)."""
        hue = face_hue(frame, face)
        if hue is None:
            return
        if SKIN_FACE_HUES[0] <= hue <= SKIN_FACE_HUES[1]:
            self.blue_in_a_row = 0
            self.warned = False
        elif BLUE_SIDE[0] <= hue <= BLUE_SIDE[1]:
            self.blue_in_a_row += 1
            if self.blue_in_a_row >= self.run and not self.warned:
                self.warned = True
                log.warning(
                    "the camera's red and blue look swapped: the last %d faces sent were "
                    "blue. Check the camera driver and the pixel format it delivers (the "
                    "gate reads B, G, R); matching suffers until then",
                    self.blue_in_a_row,
                )


__all__ = [
    "BLUE_SIDE",
    "MIN_CHROMA",
    "SKIN_FACE_HUES",
    "SWAPPED_RUN",
    "ColourOrderWatch",
    "face_hue",
]
