"""Unit and property tests for appliance.vision.quality and .selection on synthetic frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vision.detectors.base import Face
from appliance.vision.quality import FEEDBACK, QualityThresholds, assess, face_region
from appliance.vision.selection import NoSelection, Selection, select_frame

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
    }


def test_no_faces() -> None:
    report = assess(make_frame(), [])
    assert report.face is None
    assert report.failures == ["no_face"]
    assert not report.passed
    assert report.score == 0.0
    assert report.feedback == FEEDBACK["no_face"] == "look at the camera"


def test_small_inter_eye_distance() -> None:
    face = make_face(right_eye=(140.0, 100.0), left_eye=(160.0, 100.0))
    report = assess(make_frame(), [face])
    assert report.failures == ["inter_eye_distance"]
    assert report.feedback == "step closer"


def test_second_face_of_similar_area() -> None:
    other = make_face(box=(10.0, 10.0, 100.0, 110.0), right_eye=(30, 40), left_eye=(70, 40))
    report = assess(make_frame(), [other, make_face()])
    assert report.face is not None
    assert report.face.box == BOX  # the larger face is the one measured
    assert report.measures["single_face"] == pytest.approx(90 * 100 / (100 * 120))
    assert report.failures == ["single_face"]
    assert report.feedback == "one at a time"


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
    assert report.feedback == "step to the centre"


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
    assert report.feedback == "hold still"


def test_dark_face_region_fails_exposure() -> None:
    report = assess(make_frame(low=10, high=40), [make_face()])
    assert report.measures["exposure"] < 50
    assert report.failures[0] == "exposure"
    assert set(report.failures) <= {"exposure", "contrast"}
    assert report.feedback == "look at the camera"


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
    assert report.feedback == "look at the camera"


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
    assert report.feedback == "step closer"  # the first failing measure speaks
    assert report.score < assess(make_frame(), [make_face()]).score


def test_feedback_covers_every_measure() -> None:
    measures = set(assess(make_frame(), [make_face()], previous=make_face()).measures)
    assert measures | {"no_face"} == set(FEEDBACK)
    assert all(isinstance(text, str) and text for text in FEEDBACK.values())


def test_face_region_is_a_clipped_view() -> None:
    frame = make_frame()
    region = face_region(frame, make_face(box=(-5.5, 230.2, 40.1, 260.0)))
    assert region.shape == (10, 41, 3)
    assert np.shares_memory(region, frame)


# --- capture.select_frame --------------------------------------------------------------


class FakeSource:
    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = list(frames)
        self.reads = 0

    def read(self) -> np.ndarray | None:
        self.reads += 1
        return self.frames.pop(0) if self.frames else None

    def close(self) -> None:
        pass


class FakeDetector:
    """Answers a scripted list of faces per call."""

    def __init__(self, answers: list[list[Face]]) -> None:
        self.answers = list(answers)
        self.seen: list[np.ndarray] = []

    def detect(self, frame: np.ndarray) -> list[Face]:
        self.seen.append(frame)
        return self.answers.pop(0) if self.answers else []


def test_returns_first_passing_frame_and_zeroizes_the_rest() -> None:
    frames = [make_frame(seed=i) for i in range(5)]
    frames[1] = make_frame(flat=128)
    detector = FakeDetector([[], [make_face()], [make_face()], [make_face()], [make_face()]])
    source = FakeSource(frames)
    result = select_frame(source, detector, max_frames=10)
    assert isinstance(result, Selection)
    assert result.frame is frames[2]
    assert result.frames_seen == 3
    assert result.report.passed
    assert result.first_face_at is not None
    assert result.frame.any()
    assert not frames[0].any()
    assert not frames[1].any()
    assert frames[3].any() and frames[4].any()  # never read
    assert source.reads == 3


def test_opted_out_before_first_frame_reads_nothing() -> None:
    source = FakeSource([make_frame()])
    detector = FakeDetector([[make_face()]])
    result = select_frame(source, detector, max_frames=5, opted_out=lambda: True)
    assert isinstance(result, NoSelection)
    assert result.reason == "opted_out"
    assert result.frames_seen == 0
    assert source.reads == 0
    assert detector.seen == []


def test_opted_out_midway_stops_reading() -> None:
    frames = [make_frame(flat=128) for _ in range(6)]
    source = FakeSource(frames)
    detector = FakeDetector([[make_face()]] * 6)

    def opted_out() -> bool:
        return source.reads >= 2

    result = select_frame(source, detector, max_frames=6, opted_out=opted_out)
    assert isinstance(result, NoSelection)
    assert result.reason == "opted_out"
    assert result.frames_seen == 2
    assert source.reads == 2
    assert result.last_feedback == "hold still"
    assert not frames[0].any() and not frames[1].any()
    assert frames[2].any()


def test_opt_out_during_assessment_of_a_passing_frame_discards_it() -> None:
    frame = make_frame()
    source = FakeSource([frame, make_frame()])
    answers = iter([False, True, True, True])
    result = select_frame(
        source, FakeDetector([[make_face()]] * 2), max_frames=2, opted_out=lambda: next(answers)
    )
    assert isinstance(result, NoSelection)
    assert result.reason == "opted_out"
    assert source.reads == 1
    assert not frame.any()


def test_no_faces_in_window() -> None:
    frames = [make_frame(seed=i) for i in range(4)]
    source = FakeSource(frames)
    result = select_frame(source, FakeDetector([]), max_frames=3)
    assert isinstance(result, NoSelection)
    assert result.reason == "no_face"
    assert result.frames_seen == 3
    assert result.last_feedback == "look at the camera"
    assert all(not f.any() for f in frames[:3])
    assert frames[3].any()


def test_faces_that_never_pass_give_quality() -> None:
    frames = [make_frame(flat=128) for _ in range(4)]
    small = make_face(right_eye=(140.0, 100.0), left_eye=(160.0, 100.0))
    detector = FakeDetector([[make_face()], [], [make_face()], [small]])
    result = select_frame(FakeSource(frames), detector, max_frames=4)
    assert isinstance(result, NoSelection)
    assert result.reason == "quality"
    assert result.frames_seen == 4
    assert result.last_feedback == "step closer"  # what the last frame needed
    assert all(not f.any() for f in frames)


def test_source_that_ends_stops_the_window() -> None:
    frames = [make_frame(flat=128)]
    result = select_frame(FakeSource(frames), FakeDetector([[make_face()]]), max_frames=10)
    assert isinstance(result, NoSelection)
    assert result.frames_seen == 1
    assert result.reason in ("quality", "source_ended")
    assert not frames[0].any()


def test_source_with_no_frames_reports_source_ended() -> None:
    result = select_frame(FakeSource([]), FakeDetector([]), max_frames=10)
    assert isinstance(result, NoSelection)
    assert result.frames_seen == 0
    assert result.reason == "source_ended"


@settings(max_examples=40, deadline=None)
@given(
    plan=st.lists(st.sampled_from(["none", "flat", "small", "good"]), min_size=1, max_size=8),
    max_frames=st.integers(1, 8),
)
def test_select_frame_property(plan: list[str], max_frames: int) -> None:
    frames = [make_frame(flat=128) if kind == "flat" else make_frame() for kind in plan]
    small = make_face(right_eye=(140.0, 100.0), left_eye=(160.0, 100.0))
    answers = [
        {"none": [], "flat": [make_face()], "small": [small], "good": [make_face()]}[kind]
        for kind in plan
    ]
    result = select_frame(FakeSource(frames), FakeDetector(answers), max_frames=max_frames)
    window = plan[:max_frames]
    if "good" in window:
        chosen = window.index("good")
        assert isinstance(result, Selection)
        assert result.frame is frames[chosen]
        assert result.frames_seen == chosen + 1
        assert all(not f.any() for f in frames[:chosen])
        assert all(f.any() for f in frames[chosen:])
    elif "small" in window:
        # Nothing passed every threshold; a small but sharp face clears the hard minimums.
        kept = window.index("small")
        assert isinstance(result, Selection) and result.fallback
        assert result.frame is frames[kept]
        assert result.frames_seen == len(window)
        assert all(not f.any() for i, f in enumerate(frames[: len(window)]) if i != kept)
        assert frames[kept].any()
    else:
        assert isinstance(result, NoSelection)
        assert result.frames_seen == len(window)
        assert result.reason == ("no_face" if set(window) == {"none"} else "quality")
        assert all(not f.any() for f in frames[: len(window)])
        assert all(f.any() for f in frames[len(window) :])


def test_best_frame_is_sent_only_above_the_hard_minimums() -> None:
    tiny = make_face(right_eye=(143.0, 100.0), left_eye=(157.0, 100.0))  # IED 14 < hard 20
    small = make_face(right_eye=(140.0, 100.0), left_eye=(160.0, 100.0))  # IED 20: fallback
    larger = make_face(right_eye=(137.0, 100.0), left_eye=(163.0, 100.0))  # IED 26: better
    frames = [make_frame(seed=i) for i in range(4)]
    detector = FakeDetector([[tiny], [small], [larger], [tiny]])
    result = select_frame(FakeSource(frames), detector, max_frames=4)
    assert isinstance(result, Selection) and result.fallback
    assert result.frame is frames[2]
    assert "inter_eye_distance" in result.report.failures
    assert not frames[1].any(), "the replaced best frame must be zeroized"
    assert not frames[0].any() and not frames[3].any()

    only_tiny = [make_frame(seed=i) for i in range(3)]
    result = select_frame(FakeSource(only_tiny), FakeDetector([[tiny]] * 3), max_frames=3)
    assert isinstance(result, NoSelection) and result.reason == "quality"
    assert all(not f.any() for f in only_tiny)


def test_motion_between_frames_fails_hold_still() -> None:
    still = make_face()
    moved = make_face(
        box=(130.0, 60.0, 230.0, 180.0), right_eye=(155.0, 100.0), left_eye=(205.0, 100.0)
    )
    report = assess(make_frame(), [moved], previous=still)
    assert report.measures["motion"] == pytest.approx(30 / 50)
    assert "motion" in report.failures and report.feedback == "hold still"
    assert "motion" not in assess(make_frame(), [still], previous=still).failures


def test_kept_best_frame_is_zeroized_when_a_later_frame_faults() -> None:
    small = make_face(right_eye=(140.0, 100.0), left_eye=(160.0, 100.0))  # fallback-worthy
    frames = [make_frame(seed=1), make_frame(seed=2)]

    class FaultOnSecond(FakeDetector):
        def detect(self, frame):
            if len(self.seen) == 1:
                raise RuntimeError("detector fault")
            return super().detect(frame)

    with pytest.raises(RuntimeError):
        select_frame(FakeSource(frames), FaultOnSecond([[small], [small]]), max_frames=2)
    assert not frames[0].any(), "the best frame kept so far must be zeroized on a fault"
