"""What every face detector returns (``Face``), and the capture zone.

Each runtime's backend has its own module beside this one (``blazeface`` holds the
model's input and output for the LiteRT and onnxruntime backends); ``tracking`` follows a
face found once with a region search around it.

The capture zone is the central part of the frame where a traveller stands to be
photographed (by default a square as wide as the frame is high): faces outside it are
not candidates anyway, and the model then sees them larger, which is what lets the
full-range model find a 100-px face in a 720p frame reliably.
"""

from __future__ import annotations

import abc
import math
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


class RegionDetector(Detector, Protocol):
    """A detector that can also search one rectangle of a frame (for tracking)."""

    def detect_region(
        self, frame: np.ndarray, region: tuple[int, int, int, int], *, gamma: float | None = None
    ) -> list[Face]: ...


def face_region(frame: np.ndarray, face: Face) -> np.ndarray:
    """The face box clipped to the frame (a view, not a copy)."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = face.box
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(math.ceil(x1), width), min(math.ceil(y1), height)
    return frame[y0:y1, x0:x1]


def zone_view(frame: np.ndarray, zone_width: float | None) -> tuple[np.ndarray, int]:
    """The central band of ``frame`` (a view, no copy) and its x offset in the frame."""
    if zone_width is None:
        return frame, 0
    height, width = frame.shape[:2]
    band = min(width, max(1, round(height * zone_width)))
    left = (width - band) // 2
    return frame[:, left : left + band], left


def shift_faces(faces: list[Face], dx: float, dy: float = 0.0) -> list[Face]:
    """Move faces found in a zone or a region back into frame coordinates."""
    if not dx and not dy:
        return faces
    offset = np.array([dx, dy], np.float32)
    return [
        replace(
            f,
            box=(f.box[0] + dx, f.box[1] + dy, f.box[2] + dx, f.box[3] + dy),
            keypoints=f.keypoints + offset,
        )
        for f in faces
    ]


class ViewSearch(abc.ABC):
    """A detector that searches one view of a frame at a time (``_infer``): the capture
    zone, or for tracking any rectangle of the frame; faces come back in frame pixels."""

    zone_width: float | None

    @abc.abstractmethod
    def _infer(self, view: np.ndarray, gamma: float | None = None) -> list[Face]:
        """Faces in ``view`` (any part of a frame), in the view's pixels; ``gamma``: the
        model sees the view through that tone curve (``appliance.vision.tone``)."""

    def detect(self, frame: np.ndarray, *, gamma: float | None = None) -> list[Face]:
        """Faces in the capture zone of ``frame`` (H, W, 3 BGR uint8), most confident first;
        ``gamma``: the model sees the zone through that tone curve."""
        zone, dx = zone_view(frame, self.zone_width)
        return shift_faces(self._infer(zone, gamma), dx)

    def detect_region(
        self, frame: np.ndarray, region: tuple[int, int, int, int], *, gamma: float | None = None
    ) -> list[Face]:
        """Faces in the rectangle ``region`` (x0, y0, x1, y1) of ``frame``, in frame pixels;
        ``gamma``: the model sees the region through that tone curve."""
        x0, y0, x1, y1 = region
        return shift_faces(self._infer(frame[y0:y1, x0:x1], gamma), x0, y0)


def same_face(a: Face, b: Face) -> bool:
    """Do two detections (from one model or from two) show the same face? Their boxes
    overlap well, or their centres are within half a face width of each other."""
    if iou(a.box, b.box) >= 0.3:
        return True
    ax, ay = (a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2
    bx, by = (b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2
    return float(np.hypot(ax - bx, ay - by)) < 0.5 * max(a.width, b.width)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


__all__ = [
    "DEFAULT_MIN_SCORE",
    "DEFAULT_ZONE_WIDTH",
    "Detector",
    "Face",
    "RegionDetector",
    "ViewSearch",
    "face_region",
    "iou",
    "same_face",
    "shift_faces",
    "zone_view",
]
