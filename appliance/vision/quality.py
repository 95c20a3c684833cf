"""Capture-quality gate: is this face good enough to send to the matcher?

Measures modelled on ISO/IEC 29794-5 and BSI OFIQ: inter-eye distance, a single
dominant face, the face inside the frame and near its centre, head pose (roll from the
eye line; yaw and pitch estimated from the nose against the eyes and mouth), sharpness,
exposure, clipping and contrast of the face region, and motion since the previous
frame. Every measure has a threshold in ``QualityThresholds`` (the deploying airline
sets them; OFIQ sets none) and maps to a 0–100 component score by a logistic curve that
is 50 at the threshold, as OFIQ maps raw values; the unified score is their mean.

With ``exposure_correction`` an under-exposed face (backlight, a dim hall) is measured
through the global tone curve of ``appliance.vision.tone`` (``QualityReport.gamma``),
the same curve that is then applied to the crop sent for that frame. The hard minimums
are the floor below which no matcher should be asked (``appliance.vision.selection``
decides when a frame that misses a threshold may still be sent); the failing measure
that comes first says what the traveller should do (``appliance.vision.feedback``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from appliance.vision.detectors.base import Face, face_region
from appliance.vision.feedback import FEEDBACK, Feedback
from appliance.vision.tone import apply_gamma, face_gamma
from gate_contract import image_noise

# Pose from 2-D keypoints, with a rigid average adult head: the nose tip sits about 35 mm
# in front of the pupils' plane (0.55 of the 63 mm inter-pupil distance) and about 30 mm
# in front of the eye-mouth plane (0.45 of the 70 mm eye-to-mouth height); turning the
# head by an angle moves the nose across by depth * tan(angle) in those units. Level, it
# sits 0.57 of the way from the eye line to the mouth (median over faces-dev). These are
# estimates for gating ("look at the camera"), not measurements.
_YAW_DEPTH = 0.55
_PITCH_DEPTH = 0.45
_PITCH_NEUTRAL = 0.57
SHARPNESS_WIDTH_PX = 96


@dataclass(frozen=True)
class QualityThresholds:
    min_inter_eye_px: float = 28.0
    # A second face this large (area, against the nearest) means "one at a time"; a
    # smaller one is someone behind in the queue. 0.49: 0.7 of the width, i.e. a face
    # about 1.4 times as far away (at 0.8 m, someone 1.15 m or farther).
    second_face_area_ratio: float = 0.49
    edge_margin_px: float = 4.0
    max_centre_offset: float = 0.3  # face centre from frame centre, in frame widths
    max_roll_deg: float = 15.0
    max_yaw_deg: float = 30.0
    max_pitch_deg: float = 30.0
    min_sharpness: float = 20.0  # variance of the Laplacian on the face, at most 96 px wide
    min_luminance: float = 50.0
    max_luminance: float = 210.0
    max_clipped_fraction: float = 0.05
    min_contrast: float = 12.0  # standard deviation of the face region's grey levels
    # Eye-midpoint travel since the previous frame, in IEDs. A traveller walking up moves
    # 0.1-0.25 IED a frame (steps, approach); blur itself is what sharpness measures, so
    # this only stops frames of a sudden move (a turn of the head, a stumble).
    max_motion: float = 0.3
    # Hard minimums: the best frame of a window is sent only if it clears these. Size is
    # not relaxed by default: a face smaller than min_inter_eye_px that stands still is
    # as likely a poster or someone far behind as a traveller.
    hard_min_inter_eye_px: float = 28.0
    hard_min_sharpness: float = 8.0
    hard_min_luminance: float = 30.0
    hard_max_luminance: float = 230.0


# For each measure: (higher is better?, logistic scale) for its 0-100 component score.
_SCORING = {
    "inter_eye_distance": (True, 6.0),
    "single_face": (False, 0.08),
    "inside_frame": (True, 4.0),
    "centre": (False, 0.06),
    "roll": (False, 4.0),
    "yaw": (False, 6.0),
    "pitch": (False, 6.0),
    "sharpness": (True, 10.0),
    "exposure": (True, 15.0),  # distance inside the luminance band
    "clipping": (False, 0.02),
    "contrast": (True, 4.0),
    "motion": (False, 0.05),
}


@dataclass
class QualityReport:
    """Measured values, what failed, and the face they describe."""

    face: Face | None
    measures: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    hard_failures: list[str] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)
    gamma: float = 1.0  # the tone curve the face was measured through (1.0: none)
    face_grey: float | None = None  # the face's mean grey as recorded, before the curve

    @property
    def passed(self) -> bool:
        return self.face is not None and not self.failures

    @property
    def passes_hard_minimums(self) -> bool:
        return self.face is not None and not self.hard_failures

    @property
    def score(self) -> float:
        """Unified quality 0–100: the mean of the still-image component scores.

        Motion is a gate only: the first frame of a window has no motion figure, and
        frames must rank on the same components.
        """
        still = [v for k, v in self.components.items() if k != "motion"]
        if self.face is None or not still:
            return 0.0
        return sum(still) / len(still)

    @property
    def feedback(self) -> Feedback | None:
        """What the traveller should do about the first failing measure (None: nothing)."""
        return FEEDBACK[self.failures[0]] if self.failures else None


def head_pose(face: Face) -> tuple[float, float, float]:
    """(roll, yaw, pitch) in degrees from the eye, nose and mouth keypoints."""
    right_eye, left_eye, nose, mouth = (face.keypoints[i].astype(np.float64) for i in range(4))
    eye_line = left_eye - right_eye
    distance = float(np.hypot(*eye_line)) or 1e-6
    across = eye_line / distance
    down = np.array([-across[1], across[0]])
    middle = (right_eye + left_eye) / 2
    roll = math.degrees(math.atan2(eye_line[1], eye_line[0]))
    yaw = math.degrees(math.atan(float(np.dot(nose - middle, across)) / distance / _YAW_DEPTH))
    eye_to_mouth = float(np.dot(mouth - middle, down)) or 1e-6
    nose_drop = float(np.dot(nose - middle, down)) / eye_to_mouth
    pitch = math.degrees(math.atan((nose_drop - _PITCH_NEUTRAL) / _PITCH_DEPTH))
    return roll, yaw, pitch


def _component(name: str, value: float, threshold: float) -> float:
    higher_is_better, scale = _SCORING[name]
    margin = (value - threshold) if higher_is_better else (threshold - value)
    return 100.0 / (1.0 + math.exp(-max(min(margin / scale, 50.0), -50.0)))


def assess(
    frame: np.ndarray,
    faces: list[Face],
    limits: QualityThresholds | None = None,
    previous: Face | None = None,
    *,
    exposure_correction: bool = False,
) -> QualityReport:
    """Measure the most prominent face in ``frame``; ``previous`` is last frame's face.

    With ``exposure_correction`` a dark face is measured through ``face_gamma``'s curve.
    """
    limits = limits or QualityThresholds()
    if not faces:
        return QualityReport(None, failures=["no_face"], hard_failures=["no_face"])
    ranked = sorted(faces, key=lambda f: f.area, reverse=True)
    face = ranked[0]
    report = QualityReport(face)
    m = report.measures

    right_eye, left_eye = face.keypoints[0], face.keypoints[1]
    m["inter_eye_distance"] = float(np.hypot(*(left_eye - right_eye)))
    roll, yaw, pitch = head_pose(face)
    m["roll"], m["yaw"], m["pitch"] = abs(roll), abs(yaw), abs(pitch)
    m["single_face"] = ranked[1].area / max(face.area, 1e-6) if len(ranked) > 1 else 0.0

    height, width = frame.shape[:2]
    x0, y0, x1, y1 = face.box
    m["inside_frame"] = min(x0, y0, width - x1, height - y1)
    centre = np.array([(x0 + x1) / 2 - width / 2, (y0 + y1) / 2 - height / 2])
    m["centre"] = float(np.hypot(*centre)) / width
    if previous is not None:
        moved = (right_eye + left_eye) / 2 - (previous.keypoints[0] + previous.keypoints[1]) / 2
        m["motion"] = float(np.hypot(*moved)) / max(m["inter_eye_distance"], 1e-6)

    region = face_region(frame, face)
    if region.size == 0:
        report.failures.append("inside_frame")
        report.hard_failures.append("inside_frame")
        return report
    gray = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    report.face_grey = float(gray.mean())
    if exposure_correction:
        report.gamma = face_gamma(report.face_grey)
        apply_gamma(gray, report.gamma)
    # Larger faces are brought down to 96 px wide so the figure does not grow with size;
    # smaller ones are measured as they are (enlarging them would blur them ourselves).
    if gray.shape[1] > SHARPNESS_WIDTH_PX:
        height = max(1, round(SHARPNESS_WIDTH_PX * gray.shape[0] / gray.shape[1]))
        scaled = cv2.resize(gray, (SHARPNESS_WIDTH_PX, height))
    else:
        scaled = gray
    m["sharpness"] = float(cv2.Laplacian(scaled, cv2.CV_32F).var())
    m["exposure"] = float(gray.mean())
    m["contrast"] = float(gray.std())
    m["clipping"] = float(np.count_nonzero((gray <= 5) | (gray >= 250)) / gray.size)
    # as sent (through the tone curve), in the face's middle: not a gate of its own
    m["noise"] = image_noise.noise_sigma(image_noise.middle_half(gray))
    gray.fill(0)  # copies of face pixels do not outlive the measurement
    scaled.fill(0)

    thresholds = {
        "inter_eye_distance": limits.min_inter_eye_px,
        "single_face": limits.second_face_area_ratio,
        "inside_frame": limits.edge_margin_px,
        "centre": limits.max_centre_offset,
        "roll": limits.max_roll_deg,
        "yaw": limits.max_yaw_deg,
        "pitch": limits.max_pitch_deg,
        "sharpness": limits.min_sharpness,
        "clipping": limits.max_clipped_fraction,
        "contrast": limits.min_contrast,
        "motion": limits.max_motion,
    }
    band = min(m["exposure"] - limits.min_luminance, limits.max_luminance - m["exposure"])
    for name, threshold in thresholds.items():
        if name in m:
            report.components[name] = _component(name, m[name], threshold)
    report.components["exposure"] = _component("exposure", band, 0.0)

    checks = {
        "inter_eye_distance": m["inter_eye_distance"] >= limits.min_inter_eye_px,
        "single_face": m["single_face"] < limits.second_face_area_ratio,
        "inside_frame": m["inside_frame"] >= limits.edge_margin_px,
        "centre": m["centre"] <= limits.max_centre_offset,
        "roll": m["roll"] <= limits.max_roll_deg,
        "yaw": m["yaw"] <= limits.max_yaw_deg,
        "pitch": m["pitch"] <= limits.max_pitch_deg,
        "sharpness": m["sharpness"] >= limits.min_sharpness,
        "motion": m.get("motion", 0.0) <= limits.max_motion,
        "exposure": limits.min_luminance <= m["exposure"] <= limits.max_luminance,
        "clipping": m["clipping"] <= limits.max_clipped_fraction,
        "contrast": m["contrast"] >= limits.min_contrast,
    }
    report.failures.extend(name for name, ok in checks.items() if not ok)
    hard = {
        "inter_eye_distance": m["inter_eye_distance"] >= limits.hard_min_inter_eye_px,
        "single_face": checks["single_face"],
        "inside_frame": checks["inside_frame"],
        "sharpness": m["sharpness"] >= limits.hard_min_sharpness,
        "exposure": limits.hard_min_luminance <= m["exposure"] <= limits.hard_max_luminance,
    }
    report.hard_failures.extend(name for name, ok in hard.items() if not ok)
    return report


__all__ = [
    "FEEDBACK",
    "SHARPNESS_WIDTH_PX",
    "QualityReport",
    "QualityThresholds",
    "assess",
    "head_pose",
]
