"""FrameSelector's rules on scripted detections (the detector is a fake: these are the
rules around it; tests/testbed/test_bench_capture.py runs them on real video)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vision.detectors.base import Face
from appliance.vision.detectors.tracking import TrackingDetector
from appliance.vision.feedback import Feedback
from appliance.vision.progress import CaptureProgress
from appliance.vision.selection import (
    FrameSelector,
    NoSelection,
    NoSelectionReason,
    Selection,
    SelectionRules,
)
from tests.appliance.vision.faces import make_face, make_frame

SMALL = make_face(right_eye=(140.0, 100.0), left_eye=(160.0, 100.0))  # IED 20: "step closer"
ROLLED = make_face(roll_deg=20)  # fails roll only: a soft failure, above the hard minimums


def companion_of(face: Face, scale: float = 0.9) -> Face:
    """A face beside ``face`` (to its left, mostly outside the frame), ``scale`` its width."""
    x0, y0, x1, y1 = face.box
    w, h = (x1 - x0) * scale, (y1 - y0) * scale
    return make_face(
        box=(x0 - w - 5, y0, x0 - 5, y0 + h),
        right_eye=(x0 - 0.75 * w - 5, y0 + 0.33 * h),
        left_eye=(x0 - 0.25 * w - 5, y0 + 0.33 * h),
    )


def grown(step: int, rate: float = 0.03) -> Face:
    """The face of a traveller walking up: ``rate`` wider per frame, IED from 40 px."""
    s = 1 + rate * step
    cx, cy = 150.0, 120.0
    half_w, half_h = 50 * s * 0.8, 60 * s * 0.8
    return make_face(
        box=(cx - half_w, cy - half_h, cx + half_w, cy + half_h),
        right_eye=(cx - 20 * s, cy - 20 * s),
        left_eye=(cx + 20 * s, cy - 20 * s),
    )


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
    """Answers a scripted list of faces per call; ``[]`` once the script ends."""

    variant = "fake"

    def __init__(self, answers: list[list[Face]]) -> None:
        self.answers = list(answers)
        self.seen = 0

    def detect(self, frame: np.ndarray) -> list[Face]:
        self.seen += 1
        return self.answers.pop(0) if self.answers else []


def frames(n: int, **kwargs) -> list[np.ndarray]:
    return [make_frame(seed=i + 1, **kwargs) for i in range(n)]


def selector(answers, *, steady: int = 2, window: int = 45, **rules) -> FrameSelector:
    return FrameSelector(
        FakeDetector(answers),
        rules=SelectionRules(steady_frames=steady, **rules),
        window_frames=window,
    )


def sent_and_wiped(result, seen: list[np.ndarray]) -> None:
    """Only the returned frame (if any) still holds pixels."""
    kept = result.frame if isinstance(result, Selection) else None
    for frame in seen:
        if frame is kept:
            assert frame.any()
        else:
            assert not frame.any(), "a frame looked at and not sent must be zeroized"


# --- steady frames ------------------------------------------------------------------


def test_one_passing_frame_is_not_enough_two_in_a_row_are() -> None:
    shot = frames(5)
    sel = selector([[], [make_face()], [make_face()], [make_face()]])
    result = sel.select(FakeSource(shot))
    assert isinstance(result, Selection) and not result.fallback
    assert result.frames_seen == 3 and result.frame_index == 3
    assert result.frame is shot[1] or result.frame is shot[2]
    sent_and_wiped(result, shot[:3])
    assert shot[3].any() and shot[4].any()  # never read


def test_the_best_frame_of_the_steady_run_is_sent() -> None:
    shot = [make_frame(seed=1), make_frame(low=90, high=160, seed=2)]  # lower contrast
    sel = selector([[make_face()], [make_face()]])
    result = sel.select(FakeSource(shot))
    assert isinstance(result, Selection)
    assert result.frame is shot[0], "the better of the two frames"
    assert not shot[1].any()


def test_with_steady_frames_1_the_first_passing_frame_is_sent() -> None:
    shot = frames(3)
    result = selector([[], [make_face()]], steady=1).select(FakeSource(shot))
    assert isinstance(result, Selection) and result.frame is shot[1] and result.frames_seen == 2


def test_a_failing_frame_breaks_the_run() -> None:
    shot = frames(5)
    shot[1] = make_frame(flat=128)  # blurred: fails sharpness
    answers = [[make_face()], [make_face()], [make_face()], [make_face()]]
    result = selector(answers).select(FakeSource(shot))
    assert isinstance(result, Selection)
    assert result.frame_index == 4  # frames 1 (pass), 2 (fail), 3 and 4 (pass, pass)
    assert any(result.frame is f for f in shot[2:4])
    sent_and_wiped(result, shot[:4])


def test_the_run_goes_on_into_the_next_window_but_only_frames_of_the_window_are_held() -> None:
    first, second = frames(3), frames(2)
    sel = selector([[], [], [make_face()], [make_face()]], window=3)
    result = sel.select(FakeSource(first))
    assert isinstance(result, NoSelection)
    assert all(not f.any() for f in first), "a window that sends nothing keeps no frame"
    result = sel.select(FakeSource(second))
    assert isinstance(result, Selection) and result.frame is second[0]
    assert result.frame_index == 4


# --- who is the traveller -----------------------------------------------------------


def test_a_clearly_smaller_face_behind_is_not_a_second_traveller() -> None:
    behind = companion_of(make_face(), scale=0.55)  # 0.3 of the area: someone queueing
    result = selector([[make_face(), behind]] * 2).select(FakeSource(frames(2)))
    assert isinstance(result, Selection)
    assert result.report.face.box == make_face().box  # the nearest face is measured


def test_two_faces_of_similar_size_are_one_at_a_time_and_referred() -> None:
    pair = [make_face(), companion_of(make_face(), scale=0.9)]
    shot = frames(45)
    result = selector([pair] * 45).select(FakeSource(shot))
    assert isinstance(result, NoSelection)
    assert result.reason is NoSelectionReason.QUALITY
    assert result.last_feedback is Feedback.ONE_AT_A_TIME
    sent_and_wiped(result, shot)


def test_a_companion_the_detector_missed_for_a_moment_still_blocks() -> None:
    pair = [make_face(), companion_of(make_face(), scale=0.9)]
    alone = [make_face()]
    memory = 15
    answers = [pair] + [alone] * (memory + 3)
    sel = selector(answers, companion_memory_frames=memory)
    result = sel.select(FakeSource(frames(len(answers))))
    assert isinstance(result, Selection)
    # Frames 2..16 are within the memory of frame 1's companion; 17 and 18 are steady.
    assert result.frame_index == memory + 3


# --- the window's best, approaching, referrals --------------------------------------


def test_a_settled_traveller_that_never_passes_gets_the_windows_best_frame() -> None:
    shot = frames(20)
    result = selector([[ROLLED]] * 20, window=20).select(FakeSource(shot))
    assert isinstance(result, Selection) and result.fallback
    assert "roll" in result.report.failures
    sent_and_wiped(result, shot)


def test_no_window_best_before_the_traveller_settled() -> None:
    shot = frames(6)
    result = selector([[ROLLED]] * 6, window=6).select(FakeSource(shot))
    assert isinstance(result, NoSelection)
    assert result.reason is NoSelectionReason.NO_FACE  # not settled: nobody to refer yet
    assert result.last_feedback is Feedback.LOOK_AT_CAMERA
    sent_and_wiped(result, shot)


def test_a_small_still_face_is_never_sent_nor_referred() -> None:
    """A poster on the wall, or someone standing far back: never a capture."""
    shot = frames(45)
    result = selector([[SMALL]] * 45).select(FakeSource(shot))
    assert isinstance(result, NoSelection) and result.reason is NoSelectionReason.NO_FACE
    assert result.last_feedback is Feedback.STEP_CLOSER
    sent_and_wiped(result, shot)


def test_a_traveller_still_walking_up_is_approaching_not_referred() -> None:
    faces = [[grown(i)] for i in range(12)]
    for face in faces:  # every frame fails (rolled) so nothing is sent at once
        face[0] = Face(face[0].score, face[0].box, ROLLED.keypoints - ROLLED.keypoints.mean(0)
                       + face[0].keypoints.mean(0))  # fmt: skip
    shot = frames(12)
    result = selector(faces, window=12).select(FakeSource(shot))
    assert isinstance(result, NoSelection) and result.reason is NoSelectionReason.APPROACHING
    sent_and_wiped(result, shot)


def test_a_settled_traveller_at_capture_size_with_no_usable_frame_is_referred() -> None:
    shot = frames(20, flat=128)  # sharpness 0: below the hard minimum
    result = selector([[make_face()]] * 20, window=20).select(FakeSource(shot))
    assert isinstance(result, NoSelection) and result.reason is NoSelectionReason.QUALITY
    assert result.last_feedback is Feedback.HOLD_STILL
    sent_and_wiped(result, shot)


# --- exposure correction ------------------------------------------------------------


def test_a_dark_face_is_accepted_with_its_tone_curve() -> None:
    shot = frames(2, low=15, high=60)
    result = selector([[make_face()]] * 2).select(FakeSource(shot))
    assert isinstance(result, Selection) and result.gamma < 1.0
    plain = selector([[make_face()]] * 2, exposure_correction=False)
    assert isinstance(plain.select(FakeSource(frames(2, low=15, high=60))), NoSelection)


# --- opt-out, faults, the end of the source -----------------------------------------


def test_opted_out_before_the_first_frame_reads_nothing() -> None:
    source = FakeSource(frames(3))
    sel = selector([[make_face()]] * 3)
    result = sel.select(source, opted_out=lambda: True)
    assert isinstance(result, NoSelection) and result.reason is NoSelectionReason.OPTED_OUT
    assert source.reads == 0 and sel.detector.seen == 0


def test_opt_out_midway_zeroizes_the_frames_held() -> None:
    shot = frames(4)
    source = FakeSource(shot)
    sel = selector([[make_face()], [make_face()]], steady=3)
    result = sel.select(source, opted_out=lambda: source.reads >= 2)
    assert isinstance(result, NoSelection) and result.reason is NoSelectionReason.OPTED_OUT
    assert source.reads == 2
    sent_and_wiped(result, shot[:2])


def test_opt_out_as_the_capture_completes_sends_nothing() -> None:
    shot = frames(2)
    answers = iter([False, False, True])
    sel = selector([[make_face()]] * 2)
    result = sel.select(FakeSource(shot), opted_out=lambda: next(answers, True))
    assert isinstance(result, NoSelection) and result.reason is NoSelectionReason.OPTED_OUT
    sent_and_wiped(result, shot)


def test_a_fault_on_a_later_frame_zeroizes_the_frames_held_and_in_hand() -> None:
    shot = frames(14)

    class FaultOnThirteenth(FakeDetector):
        def detect(self, frame):
            if self.seen == 12:
                raise RuntimeError("detector fault")
            return super().detect(frame)

    kept: list[bool] = []
    sel = FrameSelector(FaultOnThirteenth([[ROLLED]] * 14), rules=SelectionRules())
    sel.add_observer(lambda progress: kept.append(any(f.any() for f in shot[: progress.frame])))
    with pytest.raises(RuntimeError):
        sel.select(FakeSource(shot))
    assert kept[-1], "a settled traveller's best frame was held when the fault came"
    assert all(not f.any() for f in shot[:13])
    assert shot[13].any()  # never read


def test_a_source_that_ends_at_once_reports_it() -> None:
    result = selector([]).select(FakeSource([]))
    assert isinstance(result, NoSelection) and result.reason is NoSelectionReason.SOURCE_ENDED


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(st.sampled_from(["none", "flat", "small", "good", "pair"]), max_size=12),
    window=st.integers(1, 12),
    steady=st.integers(1, 3),
)
def test_nothing_but_the_frame_sent_keeps_pixels(plan, window, steady) -> None:
    pair = [make_face(), companion_of(make_face())]
    faces = {"none": [], "flat": [make_face()], "small": [SMALL], "good": [make_face()]}
    faces["pair"] = pair
    shot = [make_frame(flat=128) if kind == "flat" else make_frame(seed=3) for kind in plan]
    sel = selector([faces[kind] for kind in plan], steady=steady, window=window)
    source = FakeSource(shot)
    seen: list[np.ndarray] = []
    result = None
    while True:
        before = source.reads
        result = sel.select(source)
        seen += shot[before : source.reads]
        again = (NoSelectionReason.NO_FACE, NoSelectionReason.APPROACHING)
        if isinstance(result, Selection) or result.reason not in again:
            break
    sent_and_wiped(result, seen)
    if isinstance(result, Selection):
        index = result.frame_index
        if result.fallback:  # the window's best: above every hard minimum
            assert result.report.passes_hard_minimums
        else:
            assert plan[index - 1] == "good" and (steady == 1 or plan[index - 2] == "good")
        assert "pair" not in plan[max(0, index - 16) : index], "a companion was in view"


# --- observers ----------------------------------------------------------------------


def test_observers_get_positions_and_advice_never_pixels() -> None:
    seen: list[CaptureProgress] = []
    sel = selector([[SMALL], [make_face()], [make_face()]])
    sel.add_observer(seen.append)
    result = sel.select(FakeSource(frames(3)))
    assert isinstance(result, Selection)
    assert [p.frame for p in seen] == [1, 2, 3]
    assert seen[0].feedback is Feedback.STEP_CLOSER and seen[0].box == SMALL.box
    assert seen[1].feedback is Feedback.HOLD_STILL  # passing, not yet steady
    assert seen[2].captured and seen[2].steady_frames == 2 and seen[2].steady_needed == 2
    assert len(seen[2].keypoints) == 6 and seen[2].frame_size == (320, 240)
    for progress in seen:
        document = progress.to_dict()
        json.dumps(document)  # plain JSON types only
        assert not any(isinstance(v, np.ndarray) for v in vars(progress).values())
        assert progress.vision_ms >= 0 and progress.vision_cpu_ms >= 0


def test_a_broken_observer_does_not_stop_the_capture(caplog) -> None:
    sel = selector([[make_face()]] * 2)

    @sel.add_observer
    def broken(progress: CaptureProgress) -> None:
        raise ValueError("display gone")

    assert isinstance(sel.select(FakeSource(frames(2))), Selection)
    assert "observer failed" in caplog.text


# --- with tracking: the whole zone is checked before a frame leaves -----------------


class ZoneFake(FakeDetector):
    """The whole-zone model: a scripted answer per call."""


class RegionFake:
    variant = "region"

    def __init__(self, face: Face) -> None:
        self.face = face
        self.calls = 0

    def detect_region(self, frame, region):
        self.calls += 1
        return [self.face]


def tracked(zone_answers: list[list[Face]]) -> tuple[FrameSelector, ZoneFake, RegionFake]:
    """A selector on a tracker whose zone search is scripted; the region always finds the
    traveller's face. The zone first finds a small face (it fails "step closer"), so the
    first frames that pass are region frames."""
    zone = ZoneFake(zone_answers)
    region = RegionFake(make_face())
    tracker = TrackingDetector(zone, region, zone_width=None, refresh_frames=100)
    return FrameSelector(tracker, rules=SelectionRules(steady_frames=2)), zone, region


def test_a_tracked_frame_is_sent_once_the_whole_zone_shows_the_traveller_alone() -> None:
    sel, zone, region = tracked([[SMALL], [make_face()]])
    shot = frames(4)
    result = sel.select(FakeSource(shot))
    assert isinstance(result, Selection) and result.frame_index == 3
    assert region.calls == 2 and zone.seen == 2, "acquired, followed twice, checked once"
    sent_and_wiped(result, shot[:3])


def test_with_tracking_a_companion_in_the_zone_check_blocks_the_capture() -> None:
    companion = companion_of(make_face(), scale=0.9)
    sel, zone, _ = tracked([[SMALL]] + [[make_face(), companion]] * 50)
    shot = frames(20)
    result = sel.select(FakeSource(shot), max_frames=20)
    assert not isinstance(result, Selection), "a companion beside the traveller: nothing sent"
    assert zone.seen >= 2, "the tracked frame was checked on the whole zone"
    sent_and_wiped(result, shot)


def test_with_tracking_someone_nearer_in_the_zone_check_blocks_the_capture() -> None:
    face = make_face()
    nearer = companion_of(face, scale=1.4)
    sel, _, _ = tracked([[SMALL]] + [[face, nearer]] * 50)
    result = sel.select(FakeSource(frames(8)), max_frames=8)
    assert not isinstance(result, Selection)


class LookingRegion(RegionFake):
    """The region model: the traveller where it follows, the companion where it looks."""

    def __init__(self, face: Face, companion: Face) -> None:
        super().__init__(face)
        self.companion = companion
        self.looked = 0

    def detect_region(self, frame, region, *, gamma=None):
        x0, _, x1, _ = region
        if x0 <= self.companion.box[0] and self.companion.box[2] <= x1 and x1 < self.face.box[2]:
            self.looked += 1
            return [self.companion]
        return super().detect_region(frame, region)


def test_a_companion_the_zone_model_stops_seeing_is_looked_for_where_it_was() -> None:
    face = make_face(box=(180.0, 60.0, 280.0, 180.0), right_eye=(205.0, 100.0),
                     left_eye=(255.0, 100.0))  # fmt: skip
    companion = companion_of(face, scale=0.95)
    zone = ZoneFake([[SMALL], [face, companion]] + [[face]] * 60)  # seen once, then missed
    region = LookingRegion(face, companion)
    tracker = TrackingDetector(zone, region, zone_width=None, refresh_frames=1)
    sel = FrameSelector(tracker, rules=SelectionRules(steady_frames=2))
    result = sel.select(FakeSource(frames(40)), max_frames=40)
    assert region.looked >= 3, "where the companion stood was looked at again"
    assert not isinstance(result, Selection), "the companion is still there: nothing sent"


# --- the second look ----------------------------------------------------------------


def textured_at(boxes: list[tuple[float, float, float, float]], seed: int) -> np.ndarray:
    """A grey frame with a textured patch at each face box (so each face can pass)."""
    frame = np.full((240, 320, 3), 118, np.uint8)
    rng = np.random.default_rng(seed)
    for box in boxes:
        x0, y0, x1, y1 = (int(max(0.0, v)) for v in box)
        frame[y0:y1, x0:x1] = rng.integers(60, 200, size=(y1 - y0, x1 - x0, 1), dtype=np.uint8)
    return frame


def test_someone_nearer_stepping_in_front_is_not_sent_by_the_second_look() -> None:
    """The review's attack on "the nearest face": the traveller is big enough for the
    second look, then a bigger face elsewhere (an accomplice stepping in front, hiding
    the traveller) stays steady. It is not the traveller's track: the traveller's frame
    is sent, and every other frame read is zeroized."""
    first_face, near, stranger = (
        grown(0),
        grown(27),
        make_face(box=(170.0, 20.0, 300.0, 200.0), right_eye=(200.0, 70.0), left_eye=(280.0, 70.0)),
    )
    answers = [[first_face]] * 2 + [[near]] * 3 + [[stranger]] * 4
    shot = [textured_at([f[0].box], seed) for seed, f in enumerate(answers, start=1)]
    sel = selector(answers)
    source = FakeSource(list(shot))
    first = sel.select(source)
    assert isinstance(first, Selection) and any(first.frame is f for f in shot[:2])

    again = sel.retake(source, first.report)

    assert isinstance(again, Selection) and any(again.frame is f for f in shot[3:5])
    sent_and_wiped(again, [f for f in shot[: source.reads] if f is not first.frame])
