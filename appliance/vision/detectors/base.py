"""BlazeFace face detection: one interface, two runtimes (onnxruntime and MediaPipe Tasks).

The onnxruntime backend (``FaceDetector``) letterboxes the capture zone into the model's
square input (128 px short range, 192 px full range), decodes the raw outputs against
MediaPipe's SSD anchor layout and merges overlaps with weighted non-maximum suppression,
as MediaPipe does. Each runtime's backend has its own module beside this one.

The capture zone is the central part of the frame where a traveller stands to be
photographed (by default a square as wide as the frame is high): faces outside it are
not candidates anyway, and the model then sees them larger, which is what lets the
full-range model find a 100-px face in a 720p frame reliably.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in frame pixel coordinates."""

    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    keypoints: np.ndarray  # (6, 2): right eye, left eye, nose, mouth, right ear, left ear

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


# The gate's default capture zone: a central band as wide as the frame is high.
DEFAULT_ZONE_WIDTH = 1.0
# Full-range score threshold. On faces-dev placed in 720p frames (600 faces, 18 non-face
# images incl. coin reliefs) 0.65 kept 99.5 % of faces and no false face; 0.5 let
# four coin heads and a galaxy through.
DEFAULT_MIN_SCORE = 0.65


class Detector(Protocol):
    """What the vision stage needs from a face detector."""

    variant: str

    def detect(self, frame: np.ndarray) -> list[Face]: ...


def zone_view(frame: np.ndarray, zone_width: float | None) -> tuple[np.ndarray, int]:
    """The central band of ``frame`` (a view, no copy) and its x offset in the frame."""
    if zone_width is None:
        return frame, 0
    height, width = frame.shape[:2]
    band = min(width, max(1, round(height * zone_width)))
    left = (width - band) // 2
    return frame[:, left : left + band], left


def shift_faces(faces: list[Face], dx: float) -> list[Face]:
    """Move faces found in a zone back into frame coordinates."""
    if not dx:
        return faces
    offset = np.array([dx, 0.0], np.float32)
    return [
        replace(
            f,
            box=(f.box[0] + dx, f.box[1], f.box[2] + dx, f.box[3]),
            keypoints=f.keypoints + offset,
        )
        for f in faces
    ]


__all__ = [
    "DEFAULT_MIN_SCORE",
    "DEFAULT_ZONE_WIDTH",
    "Detector",
    "Face",
    "shift_faces",
    "zone_view",
]
