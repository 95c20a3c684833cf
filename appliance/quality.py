"""Capture-quality gate: is this face good enough to send to the matcher?

Measures modelled on ISO/IEC 29794-5 (BSI OFIQ): inter-eye distance, a single dominant
face, the face inside the frame, head roll from the eye line, sharpness, exposure and
clipping of the face region. Every measure has a threshold in ``QualityThresholds``;
the deploying airline sets them, the defaults suit a 720p gate camera at 0.5–1.5 m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from appliance.detector import Face


@dataclass(frozen=True)
class QualityThresholds:
    min_inter_eye_px: float = 28.0
    second_face_area_ratio: float = 0.25  # a second face this large means "one at a time"
    edge_margin_px: float = 4.0
    max_roll_deg: float = 15.0
    min_sharpness: float = 20.0  # variance of the Laplacian on the 96-px-wide face region
    min_luminance: float = 50.0
    max_luminance: float = 210.0
    max_clipped_fraction: float = 0.05


# What the indicator or screen tells the traveller for each failing measure.
FEEDBACK = {
    "no_face": "look at the camera",
    "inter_eye_distance": "step closer",
    "single_face": "one at a time",
    "inside_frame": "step to the centre",
    "roll": "look at the camera",
    "sharpness": "hold still",
    "exposure": "look at the camera",
    "clipping": "look at the camera",
}


@dataclass
class QualityReport:
    """Measured values, the measures that failed, and the face they describe."""

    face: Face | None
    measures: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.face is not None and not self.failures

    @property
    def score(self) -> float:
        """0–100: share of measures passed, used to rank frames when none passes."""
        if self.face is None:
            return 0.0
        total = len(self.measures) or 1
        return 100.0 * (total - len(self.failures)) / total

    @property
    def feedback(self) -> str | None:
        return FEEDBACK[self.failures[0]] if self.failures else None


def face_region(frame: np.ndarray, face: Face) -> np.ndarray:
    """The face box clipped to the frame (a view, not a copy)."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = face.box
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(math.ceil(x1), width), min(math.ceil(y1), height)
    return frame[y0:y1, x0:x1]


def assess(
    frame: np.ndarray, faces: list[Face], limits: QualityThresholds | None = None
) -> QualityReport:
    """Measure the most prominent face in ``frame`` against ``limits``."""
    limits = limits or QualityThresholds()
    if not faces:
        return QualityReport(None, failures=["no_face"])
    ranked = sorted(faces, key=lambda f: f.area, reverse=True)
    face = ranked[0]
    report = QualityReport(face)
    m = report.measures

    right_eye, left_eye = face.keypoints[0], face.keypoints[1]
    dx, dy = (left_eye - right_eye).tolist()
    m["inter_eye_distance"] = math.hypot(dx, dy)
    m["roll"] = abs(math.degrees(math.atan2(dy, dx)))
    m["single_face"] = ranked[1].area / max(face.area, 1e-6) if len(ranked) > 1 else 0.0

    height, width = frame.shape[:2]
    x0, y0, x1, y1 = face.box
    m["inside_frame"] = min(x0, y0, width - x1, height - y1)

    region = face_region(frame, face)
    if region.size == 0:
        report.failures.append("inside_frame")
        return report
    gray = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    scaled = cv2.resize(gray, (96, max(1, round(96 * gray.shape[0] / gray.shape[1]))))
    m["sharpness"] = float(cv2.Laplacian(scaled, cv2.CV_32F).var())
    m["exposure"] = float(gray.mean())
    m["clipping"] = float(np.count_nonzero((gray <= 5) | (gray >= 250)) / gray.size)

    checks = {
        "inter_eye_distance": m["inter_eye_distance"] >= limits.min_inter_eye_px,
        "single_face": m["single_face"] < limits.second_face_area_ratio,
        "inside_frame": m["inside_frame"] >= limits.edge_margin_px,
        "roll": m["roll"] <= limits.max_roll_deg,
        "sharpness": m["sharpness"] >= limits.min_sharpness,
        "exposure": limits.min_luminance <= m["exposure"] <= limits.max_luminance,
        "clipping": m["clipping"] <= limits.max_clipped_fraction,
    }
    report.failures.extend(name for name, ok in checks.items() if not ok)
    return report
