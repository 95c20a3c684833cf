"""What a capture in progress tells the outside: where the face is, never its pixels.

One :class:`CaptureProgress` per frame the selection looks at: the frame's size, the
main face's box and keypoints as fractions of the frame (0..1), how many faces were
found, and the quality measure that failed first (a key of
``appliance.vision.quality.FEEDBACK``; ``"no_face"`` without a face, None once a frame
passed). Coordinates and a word: enough for a screen to draw a positioning cue and say
"come closer", and nothing that could be turned back into an image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from appliance.vision.quality import QualityReport


@dataclass(frozen=True)
class CaptureProgress:
    frame_width: int
    frame_height: int
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1 as fractions of the frame
    keypoints: tuple[tuple[float, float], ...]  # eyes, nose, mouth, ears; fractions
    faces: int
    failure: str | None  # first failing quality measure; None when the frame passed

    @classmethod
    def from_report(
        cls, shape: tuple[int, ...], faces: int, report: QualityReport
    ) -> CaptureProgress:
        height, width = int(shape[0]), int(shape[1])
        face = report.face
        failure = report.failures[0] if report.failures else None
        if face is None:
            return cls(width, height, None, (), faces, failure or "no_face")
        x0, y0, x1, y1 = face.box
        box = (
            _fraction(x0, width),
            _fraction(y0, height),
            _fraction(x1, width),
            _fraction(y1, height),
        )
        points = tuple(
            (_fraction(float(x), width), _fraction(float(y), height)) for x, y in face.keypoints
        )
        return cls(width, height, box, points, faces, failure)


def _fraction(value: float, size: int) -> float:
    return round(min(max(float(value) / size, 0.0), 1.0), 4)


ProgressObserver = Callable[[CaptureProgress], None]

__all__ = ["CaptureProgress", "ProgressObserver"]
