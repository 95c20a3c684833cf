"""Unit and property tests for appliance.vision.quality on synthetic frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vision.detectors.base import face_region
from appliance.vision.feedback import FEEDBACK, Feedback
from appliance.vision.quality import QualityThresholds, assess
from tests.appliance.vision.faces import BOX, W, make_face, make_frame

# --- quality.assess --------------------------------------------------------------------


def test_good_face_passes() -> None:
    report = assess(make_frame(), [make_face()])
    assert report.failures == []
    assert report.passed
    assert report.feedback is None
    assert report.score > 90.0
    assert report.measures["inter_eye_distance"] == pytest.approx(50.0)
    assert report.measures["roll"] == pytest.approx(0.0)
    assert report.measures["yaw"] == pytest.approx(0.0, abs=1e-6)
    assert report.measures["pitch"] == pytest.approx(0.0, abs=1e-4)
    assert report.measures["inside_frame"] == pytest.approx(60.0)
    assert set(report.measures) == {
        "inter_eye_distance",
        "roll",
        "yaw",
        "pitch",
        "single_face",
        "inside_frame",
        "centre",
        "sharpness",
        "exposure",
        "contrast",
        "clipping",
        "noise",  # measured, never a gate: it tells the second look to wait longer
    }


def test_no_faces() -> None:
    report = assess(make_frame(), [])
    assert report.face is None
    assert report.failures == ["no_face"]
    assert not report.passed
    assert report.score == 0.0
    assert report.feedback is FEEDBACK["no_face"] is Feedback.LOOK_AT_CAMERA
    assert report.feedback == "look_at_camera" and report.feedback.text == "look at the camera"


def test_small_inter_eye_distance() -> None:
    face = make_face(right_eye=(140.0, 100.0), left_eye=(160.0, 100.0))
    report = assess(make_frame(), [face])
    assert report.failures == ["inter_eye_distance"]
    assert report.feedback is Feedback.STEP_CLOSER


def test_second_face_of_similar_area() -> None:
    other = make_face(box=(10.0, 10.0, 100.0, 110.0), right_eye=(30, 40), left_eye=(70, 40))
    report = assess(make_frame(), [other, make_face()])
    assert report.face is not None
    assert report.face.box == BOX  # the larger face is the one measured
    assert report.measures["single_face"] == pytest.approx(90 * 100 / (100 * 120))
    assert report.failures == ["single_face"]
    assert report.feedback is Feedback.ONE_AT_A_TIME


def test_small_background_face_is_tolerated() -> None:
    small = make_face(box=(10.0, 10.0, 30.0, 30.0), right_eye=(15, 18), left_eye=(25, 18))
    report = assess(make_frame(), [make_face(), small])
    assert report.passed


def test_face_partly_outside_frame() -> None:
    frame = make_frame()
    box = (-20.0, 60.0, 80.0, 180.0)
    frame[60:180, 0:80] = make_frame()[60:180, 100:180]  # texture where the box is
    face = make_face(box=box, right_eye=(5.0, 100.0), left_eye=(55.0, 100.0))
    report = assess(frame, [face])
    assert report.measures["inside_frame"] == pytest.approx(-20.0)
    assert report.failures[0] == "inside_frame"
    assert set(report.failures) <= {"inside_frame", "centre"}
    assert report.feedback is Feedback.STEP_TO_CENTRE


def test_face_close_to_edge_fails_margin() -> None:
    frame = make_frame()
    face = make_face(box=(100.0, 60.0, W - 2.0, 180.0))
    frame[60:180, 200 : W - 2] = make_frame()[60:180, 100 : 100 + W - 202]
    report = assess(frame, [face])
    assert "inside_frame" in report.failures


def test_face_box_entirely_outside_frame() -> None:
    face = make_face(box=(400.0, 300.0, 500.0, 420.0), right_eye=(425, 340), left_eye=(475, 340))
    report = assess(make_frame(), [face])
    assert report.failures == ["inside_frame"]
    assert not report.passed


def test_flat_face_region_fails_sharpness() -> None:
    report = assess(make_frame(flat=128), [make_face()])
    assert report.measures["sharpness"] == pytest.approx(0.0)
    assert report.measures["contrast"] == pytest.approx(0.0)
    assert report.failures == ["sharpness", "contrast"]
    assert report.feedback is Feedback.HOLD_STILL


def test_dark_face_region_fails_exposure() -> None:
    report = assess(make_frame(low=10, high=40), [make_face()])
    assert report.measures["exposure"] < 50
    assert report.failures[0] == "exposure"
    assert set(report.failures) <= {"exposure", "contrast"}
    assert report.feedback is Feedback.FACE_THE_LIGHT


def test_bright_face_region_fails_exposure() -> None:
    report = assess(make_frame(low=215, high=245), [make_face()])
    assert report.failures[0] == "exposure"
    assert set(report.failures) <= {"exposure", "contrast"}


def test_clipped_face_region_fails_clipping() -> None:
    frame = make_frame()
    frame[60:100, 100:200] = 255  # a third of the face burnt out
    report = assess(frame, [make_face()])
    assert "clipping" in report.failures
    assert report.measures["clipping"] == pytest.approx(40 / 120, abs=0.01)


def test_rolled_eye_line_fails_roll() -> None:
    face = make_face(roll_deg=math.degrees(math.atan2(30, 45)))
    report = assess(make_frame(), [face])
    assert report.measures["roll"] == pytest.approx(math.degrees(math.atan2(30, 45)), abs=1e-3)
    assert report.failures == ["roll"]
    assert report.feedback is Feedback.LOOK_AT_CAMERA


@settings(max_examples=100, deadline=None)
@given(angle=st.floats(-80.0, 80.0))
def test_roll_property(angle: float) -> None:
    report = assess(make_frame(), [make_face(roll_deg=angle)])
    assert report.measures["roll"] == pytest.approx(abs(angle), abs=1e-3)
    assert report.measures["inter_eye_distance"] == pytest.approx(50.0, abs=1e-3)
    if abs(angle) > 15.0 + 1e-3:
        assert report.failures == ["roll"]
    elif abs(angle) < 15.0 - 1e-3:
        assert report.passed


def test_custom_thresholds() -> None:
    strict = QualityThresholds(min_inter_eye_px=60.0, min_sharpness=1e9)
    report = assess(make_frame(), [make_face()], strict)
    assert report.failures == ["inter_eye_distance", "sharpness"]
    assert report.feedback is Feedback.STEP_CLOSER  # the first failing measure speaks
    assert report.score < assess(make_frame(), [make_face()]).score


def test_feedback_covers_every_measure() -> None:
    measures = set(assess(make_frame(), [make_face()], previous=make_face()).measures)
    assert (measures - {"noise"}) | {"no_face"} == set(FEEDBACK)
    assert all(isinstance(advice.text, str) and advice.text for advice in Feedback)


def test_face_region_is_a_clipped_view() -> None:
    frame = make_frame()
    region = face_region(frame, make_face(box=(-5.5, 230.2, 40.1, 260.0)))
    assert region.shape == (10, 41, 3)
    assert np.shares_memory(region, frame)


def test_motion_between_frames_fails_hold_still() -> None:
    still = make_face()
    moved = make_face(
        box=(130.0, 60.0, 230.0, 180.0), right_eye=(155.0, 100.0), left_eye=(205.0, 100.0)
    )
    report = assess(make_frame(), [moved], previous=still)
    assert report.measures["motion"] == pytest.approx(30 / 50)
    assert "motion" in report.failures and report.feedback is Feedback.HOLD_STILL
    assert "motion" not in assess(make_frame(), [still], previous=still).failures


# --- exposure correction and sharpness ------------------------------------------------


def test_a_dark_face_is_measured_through_the_tone_curve_only_when_asked() -> None:
    frame = make_frame(low=15, high=60)  # a textured face, mean grey about 37
    plain = assess(frame, [make_face()])
    corrected = assess(frame, [make_face()], exposure_correction=True)
    assert "exposure" in plain.failures and plain.gamma == 1.0
    assert corrected.gamma < 1.0
    assert corrected.measures["exposure"] > plain.measures["exposure"] + 40
    assert "exposure" not in corrected.failures
    assert corrected.measures["contrast"] > plain.measures["contrast"]
    before = frame.copy()
    assess(frame, [make_face()], exposure_correction=True)
    assert np.array_equal(frame, before), "the frame itself is never changed"


def test_a_well_exposed_face_gets_no_correction() -> None:
    report = assess(make_frame(), [make_face()], exposure_correction=True)
    assert report.gamma == 1.0
    assert report.measures == assess(make_frame(), [make_face()]).measures


def test_too_dark_to_lift_is_left_alone_and_fails() -> None:
    report = assess(make_frame(low=0, high=12), [make_face()], exposure_correction=True)
    assert report.gamma == 1.0  # below the band: only noise would be lifted
    assert "exposure" in report.failures


def test_a_small_face_is_measured_at_its_own_size() -> None:
    """Enlarging a 60 px face to 96 px would blur it: its sharpness is taken as it is."""
    import cv2

    box = (100.0, 60.0, 160.0, 132.0)
    frame = make_frame(seed=3)
    face = make_face(box=box, right_eye=(115.0, 85.0), left_eye=(145.0, 85.0))
    region = cv2.cvtColor(frame[60:132, 100:160], cv2.COLOR_BGR2GRAY)
    native = float(cv2.Laplacian(region, cv2.CV_32F).var())
    assert assess(frame, [face]).measures["sharpness"] == pytest.approx(native, rel=1e-5)
    enlarged = cv2.resize(region, (96, round(96 * 72 / 60)))
    assert native > 2 * float(cv2.Laplacian(enlarged, cv2.CV_32F).var())


def test_noise_is_measured_in_the_middle_of_the_face() -> None:
    """Noise in the face box's outer ring (hair, edges) is not counted; in its middle it is."""
    rng = np.random.default_rng(7)
    x0, y0, x1, y1 = (int(v) for v in BOX)
    ring = make_frame(flat=128)
    ring[y0:y1, x0:x1] = np.clip(128 + rng.normal(0, 8, (y1 - y0, x1 - x0, 1)), 0, 255)
    ring[y0 + 30 : y1 - 30, x0 + 25 : x1 - 25] = 128  # the middle half is clean
    middle = make_frame(flat=128)
    middle[y0 + 30 : y1 - 30, x0 + 25 : x1 - 25] = np.clip(
        128 + rng.normal(0, 8, (60, 50, 1)), 0, 255
    )
    assert assess(ring, [make_face()]).measures["noise"] < 0.5
    assert assess(middle, [make_face()]).measures["noise"] == pytest.approx(8.0, rel=0.2)
