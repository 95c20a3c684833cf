"""Frame selection: pick the frame the matcher will see within one capture window.

The first frame whose face passes every quality threshold is chosen. If none does
before the window ends, nothing is sent ("no usable face"). Frames that were looked at
and not chosen are zeroized at once, and the wait stops the moment the traveller opts
out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance.camera import FrameSource
from appliance.detector import FaceDetector
from appliance.quality import QualityReport, QualityThresholds, assess


@dataclass
class Selection:
    frame: np.ndarray
    report: QualityReport
    frames_seen: int
    first_face_at: float | None  # perf_counter() when a face was first seen in this window


@dataclass
class NoSelection:
    reason: str  # "no_face", "quality", "opted_out", "source_ended"
    frames_seen: int
    last_feedback: str | None = None


def select_frame(
    source: FrameSource,
    detector: FaceDetector,
    *,
    max_frames: int,
    limits: QualityThresholds | None = None,
    opted_out: Callable[[], bool] = lambda: False,
) -> Selection | NoSelection:
    """Read up to ``max_frames`` frames and return the first good one, or why there is none."""
    seen = 0
    first_face_at: float | None = None
    feedback = None
    while seen < max_frames:
        if opted_out():
            return NoSelection("opted_out", seen, feedback)
        frame = source.read()
        if frame is None:
            if seen == 0:
                return NoSelection("source_ended", seen, feedback)
            break
        read_at = time.perf_counter()
        seen += 1
        report = assess(frame, detector.detect(frame), limits)
        if report.face is not None and first_face_at is None:
            first_face_at = read_at
        if report.passed and not opted_out():
            return Selection(frame, report, seen, first_face_at)
        feedback = report.feedback or feedback
        frame.fill(0)  # superseded: never kept, never sent
    if opted_out():
        return NoSelection("opted_out", seen, feedback)
    return NoSelection("no_face" if first_face_at is None else "quality", seen, feedback)
