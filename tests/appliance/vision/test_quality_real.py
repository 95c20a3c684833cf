"""Quality measures on a real face, degraded by the test: each moves the right way and the
gate decision flips where its threshold sits."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.vision.camera import place_in_canvas
from appliance.vision.feedback import Feedback
from appliance.vision.quality import QualityThresholds, assess, head_pose

CANVAS = (1280, 720)


@pytest.fixture(scope="module")
def portrait(demo_photos) -> np.ndarray:
    """A frontal portrait scaled so the face is about 160 px wide in a 720p frame."""
    image = cv2.imread(str(demo_photos / "obama2.jpg"))
    return cv2.resize(image, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)


def measure(detector, frame, limits=None, previous=None):
    report = assess(frame, detector.detect(frame), limits, previous)
    assert report.face is not None, "the detector must still find the face"
    return report


def test_clean_capture_passes(detector, portrait):
    report = measure(detector, place_in_canvas(portrait, CANVAS))
    assert report.passed, report.failures
    assert report.score > 80


def test_blur_lowers_sharpness_and_fails_the_gate(detector, portrait):
    frames = [
        place_in_canvas(cv2.GaussianBlur(portrait, (0, 0), sigma) if sigma else portrait, CANVAS)
        for sigma in (0, 1.5, 3, 6)
    ]
    reports = [measure(detector, f) for f in frames]
    sharpness = [r.measures["sharpness"] for r in reports]
    assert sharpness == sorted(sharpness, reverse=True)
    limits = QualityThresholds(min_sharpness=(sharpness[0] + sharpness[-1]) / 2)
    assert "sharpness" not in assess(frames[0], detector.detect(frames[0]), limits).failures
    assert "sharpness" in assess(frames[-1], detector.detect(frames[-1]), limits).failures


def test_darkening_lowers_exposure_until_it_fails(detector, portrait):
    frames = [
        place_in_canvas((portrait * gain).astype(np.uint8), CANVAS) for gain in (1.0, 0.6, 0.35)
    ]
    reports = [measure(detector, f) for f in frames]
    exposure = [r.measures["exposure"] for r in reports]
    assert exposure == sorted(exposure, reverse=True)
    assert "exposure" not in reports[0].failures
    assert "exposure" in reports[-1].failures


def test_rotation_changes_roll_by_the_angle_and_fails_past_the_limit(detector, portrait):
    rolls, reports = [], []
    for angle in (-25, 0, 25):
        h, w = portrait.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        rotated = cv2.warpAffine(portrait, matrix, (w, h), borderValue=(118, 118, 118))
        report = measure(detector, place_in_canvas(rotated, CANVAS))
        reports.append(report)
        rolls.append(head_pose(report.face)[0])
    assert rolls == sorted(rolls) or rolls == sorted(rolls, reverse=True)
    assert abs(rolls[2] - rolls[0]) == pytest.approx(50, abs=10)
    assert "roll" not in reports[1].failures
    assert "roll" in reports[0].failures and "roll" in reports[2].failures


def test_downscaling_shrinks_inter_eye_distance_until_step_closer(detector, portrait):
    reports = []
    for scale in (1.0, 0.5, 0.3):
        small = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        reports.append(measure(detector, place_in_canvas(small, CANVAS)))
    distances = [r.measures["inter_eye_distance"] for r in reports]
    assert distances == sorted(distances, reverse=True)
    assert "inter_eye_distance" not in reports[0].failures
    assert reports[-1].failures[0] == "inter_eye_distance"
    assert reports[-1].feedback is Feedback.STEP_CLOSER


def test_shift_towards_the_edge_moves_the_face_off_centre(detector, portrait):
    frame = place_in_canvas(portrait, CANVAS)
    centred = measure(detector, frame)
    shifted = np.roll(frame, 250, axis=1)
    off = measure(detector, shifted)
    assert off.measures["centre"] > centred.measures["centre"]
    limits = QualityThresholds(
        max_centre_offset=(off.measures["centre"] + centred.measures["centre"]) / 2
    )
    assert "centre" not in assess(frame, detector.detect(frame), limits).failures
    assert "centre" in assess(shifted, detector.detect(shifted), limits).failures


def test_second_face_close_behind_means_one_at_a_time(detector, portrait):
    frame = np.full((CANVAS[1], CANVAS[0], 3), 118, np.uint8)
    h, w = portrait.shape[:2]
    left = (CANVAS[0] - w) // 2
    frame[40 : 40 + h, left : left + w] = portrait
    behind = cv2.resize(portrait, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    bh, bw = behind.shape[:2]
    frame[0:bh, left + w - 40 : left + w - 40 + bw] = behind[:, : CANVAS[0] - (left + w - 40)]
    faces = detector.detect(frame)
    report = assess(frame, faces)
    if len(faces) < 2:
        pytest.fail(f"the detector found {len(faces)} face(s) where two stand")
    assert report.measures["single_face"] > 0.25
    assert "single_face" in report.failures
