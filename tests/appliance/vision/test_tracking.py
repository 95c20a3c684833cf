"""The tracking detector: its search order on scripted models (the logic), and the real
models on a real face (region search, exposure lift, the pair the tracker is made of)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from appliance.pipeline.lane import CLEAR_LANE_FRAMES, lane_clears
from appliance.vision.camera import place_in_canvas
from appliance.vision.detectors import create_detector
from appliance.vision.detectors.base import Face, iou
from appliance.vision.detectors.tracking import (
    IDLE_MAX_FRAMES,
    UNSEEN_REFRESHES,
    TrackingDetector,
)
from tests.appliance.vision.faces import make_face


class Zone:
    """A scripted whole-zone model; records the tone curve of each call."""

    variant = "zone"

    def __init__(self, answers: list[list[Face]]) -> None:
        self.answers = list(answers)
        self.gammas: list[float | None] = []

    def detect(self, frame, *, gamma=None):
        self.gammas.append(gamma)
        return self.answers.pop(0) if self.answers else []


class Region:
    """A scripted region model: the answer per call (None: the face it is shown)."""

    variant = "region"

    def __init__(self, answers=None) -> None:
        self.answers = list(answers or [])
        self.regions: list[tuple[int, int, int, int]] = []
        self.gammas: list[float | None] = []

    def detect_region(self, frame, region, *, gamma=None):
        self.regions.append(region)
        self.gammas.append(gamma)
        return self.answers.pop(0) if self.answers else []


FRAME = np.full((240, 320, 3), 118, np.uint8)


def moved(face: Face, dx: float) -> Face:
    return Face(
        face.score,
        (face.box[0] + dx, face.box[1], face.box[2] + dx, face.box[3]),
        face.keypoints + np.array([dx, 0], np.float32),
    )


def test_acquire_then_follow_in_a_region_then_refresh_the_whole_zone() -> None:
    face = make_face()
    zone = Zone([[face], [face]])
    region = Region([[moved(face, 2)], [moved(face, 4)], [moved(face, 6)]])
    tracker = TrackingDetector(zone, region, zone_width=None, refresh_frames=3)
    assert tracker.detect(FRAME) == [face] and tracker.search == "zone"
    assert tracker.detect(FRAME)[0].box == moved(face, 2).box
    assert tracker.search == "track" and not tracker.zone_searched
    assert tracker.detect(FRAME)[0].box == moved(face, 4).box
    faces = tracker.detect(FRAME)  # the third frame since the zone search: a refresh
    assert tracker.zone_searched and tracker.search == "zone"
    assert faces[0].box == moved(face, 6).box, "the region's measurement stands for the face"
    assert len(faces) == 1 and len(zone.gammas) == 2
    x0, y0, x1, y1 = region.regions[1]
    assert x1 - x0 == y1 - y0 and x0 <= face.box[0] + 2 and x1 >= face.box[2] + 2


def test_a_lost_face_is_searched_for_on_the_whole_zone_in_the_same_frame() -> None:
    face = make_face()
    zone = Zone([[face], [moved(face, 40)]])
    tracker = TrackingDetector(zone, Region([[]]), zone_width=None)
    tracker.detect(FRAME)
    faces = tracker.detect(FRAME)
    assert faces[0].box == moved(face, 40).box and tracker.last_search == "reacquire"


def test_a_region_hit_of_another_size_or_place_is_not_the_face_followed() -> None:
    face = make_face()
    far_off = moved(face, 150)
    tiny = Face(0.9, (140.0, 100.0, 160.0, 120.0), face.keypoints * 0.2 + 100)
    zone = Zone([[face], [face], [face]])
    tracker = TrackingDetector(zone, Region([[far_off], [tiny]]), zone_width=None)
    tracker.detect(FRAME)
    tracker.detect(FRAME)
    assert tracker.last_search == "reacquire"
    tracker.detect(FRAME)
    assert tracker.last_search == "reacquire"


def test_a_nearer_face_seen_at_a_refresh_is_followed_from_then_on() -> None:
    face = make_face()
    nearer = Face(0.9, (0.0, 20.0, 140.0, 200.0), face.keypoints - 60)
    zone = Zone([[face], [face, nearer]])
    region = Region([[face], [nearer]])
    tracker = TrackingDetector(zone, region, zone_width=None, refresh_frames=1)
    tracker.detect(FRAME)
    assert nearer in tracker.detect(FRAME)
    tracker.detect(FRAME)
    x0, _, x1, _ = region.regions[-1]
    assert x0 < nearer.box[2] and x1 > nearer.box[0], "the region now follows the nearer face"


def test_a_face_the_zone_model_stops_seeing_is_dropped_after_a_few_refreshes() -> None:
    face = make_face()
    zone = Zone([[face]] + [[]] * (UNSEEN_REFRESHES + 1))
    region = Region([[face]] * (UNSEEN_REFRESHES + 2))
    tracker = TrackingDetector(zone, region, zone_width=None, refresh_frames=1)
    tracker.detect(FRAME)
    kept = [bool(tracker.detect(FRAME)) for _ in range(UNSEEN_REFRESHES)]
    assert kept == [True] * (UNSEEN_REFRESHES - 1) + [False]


def test_possible_faces_below_the_threshold_are_reported_but_never_followed() -> None:
    face = make_face()
    doubtful = Face(0.45, (0.0, 20.0, 90.0, 140.0), face.keypoints - 80)
    zone = Zone([[face, doubtful]])
    tracker = TrackingDetector(zone, Region(), zone_width=None, min_score=0.65)
    assert tracker.detect(FRAME) == [face]
    assert doubtful in tracker.possible_faces and face in tracker.possible_faces


def test_the_search_for_a_traveller_is_bracketed() -> None:
    zone = Zone([])
    region = Region([])
    tracker = TrackingDetector(zone, region, zone_width=None, shadow_gamma=0.6)
    for _ in range(3):
        tracker.detect(np.random.default_rng(len(zone.gammas)).integers(0, 255, FRAME.shape,
                                                                         np.uint8))  # fmt: skip
    assert zone.gammas == [None, 0.6], "plain, then through the shadow curve"
    assert region.regions == [(0, 0, 320, 240)], "then the short-range model on the zone"


def test_an_unchanged_empty_zone_is_not_searched_again() -> None:
    zone = Zone([])
    region = Region([])
    tracker = TrackingDetector(zone, region, zone_width=None)
    empty = np.full((240, 320, 3), 90, np.uint8)
    for _ in range(2):  # both kinds of search find nobody
        assert tracker.detect(empty.copy()) == []
    searched = len(zone.gammas) + len(region.regions)
    noisy = empty.copy()
    noisy[::7, ::5] += 6  # sensor noise: not a change
    assert tracker.detect(noisy) == [] and tracker.search == "idle"
    assert len(zone.gammas) + len(region.regions) == searched
    person = empty.copy()
    person[60:180, 100:200] = 200  # someone stepped in
    tracker.detect(person)
    assert tracker.search == "zone" and len(zone.gammas) + len(region.regions) == searched + 1


def test_a_moving_lane_found_empty_is_searched_on_every_other_frame() -> None:
    """People walking past beyond the gate change the zone on every frame; once every kind
    of search has found nobody, only every other frame is searched, and someone who then
    steps in is found on the next frame searched."""
    face = make_face()
    zone = Zone([[], [], [], [face]])  # plain, shadow; (near: the region model); plain, shadow
    region = Region([])
    tracker = TrackingDetector(zone, region, zone_width=None, shadow_gamma=0.6)
    rng = np.random.default_rng(7)
    searches = []
    for _ in range(9):
        found = tracker.detect(rng.integers(0, 255, FRAME.shape, np.uint8))  # all changes
        searches.append(tracker.search)
        if found:
            break
    assert searches == ["zone"] * 3 + ["rest", "zone", "rest", "zone"]
    assert found == [face], "the face is found by the search after a frame of rest"


def test_the_lane_is_clear_only_after_as_many_frames_looked_at() -> None:
    """ "Is the lane clear?" after a referral: a resting frame is not a frame seen empty, so
    someone lingering in a moving lane is looked for on the full count of frames."""
    zone, region = Zone([]), Region([])
    tracker = TrackingDetector(zone, region, zone_width=None, shadow_gamma=0.6)
    rng = np.random.default_rng(5)

    class MovingLane:
        live = True

        def read(self):
            return rng.integers(0, 255, FRAME.shape, np.uint8)

    assert lane_clears(MovingLane(), tracker, threading.Event())
    assert len(zone.gammas) + len(region.regions) == CLEAR_LANE_FRAMES


def test_a_moving_lane_with_a_possible_face_is_searched_on_every_frame() -> None:
    """Someone far off in a noisy picture, whom the zone model scores below the threshold,
    is looked for on every frame: resting would only find them later."""
    face = make_face()
    doubtful = Face(0.45, face.box, face.keypoints)
    zone = Zone([[doubtful]] * 8)
    region = Region([[doubtful]] * 4)
    tracker = TrackingDetector(zone, region, zone_width=None, min_score=0.65, shadow_gamma=0.6)
    rng = np.random.default_rng(11)
    for _ in range(8):
        assert tracker.detect(rng.integers(0, 255, FRAME.shape, np.uint8)) == []
    assert len(zone.gammas) + len(region.regions) == 8


def test_a_still_empty_lane_that_changes_is_searched_at_once() -> None:
    zone = Zone([])
    tracker = TrackingDetector(zone, Region([]), zone_width=None)
    empty = np.full((240, 320, 3), 90, np.uint8)
    for _ in range(3):  # plain, near, then the empty zone again
        tracker.detect(empty.copy())
    assert tracker.search == "idle"
    person = empty.copy()
    person[60:180, 100:200] = 200
    searched = len(zone.gammas)
    tracker.detect(person)
    assert tracker.search == "zone" and len(zone.gammas) == searched + 1


def test_an_idle_zone_is_still_searched_once_in_a_while_and_its_picture_is_wiped() -> None:
    zone = Zone([])
    tracker = TrackingDetector(zone, Region([]), zone_width=None)
    empty = np.full((240, 320, 3), 90, np.uint8)
    searches = [tracker.detect(empty.copy()) or tracker.search for _ in range(IDLE_MAX_FRAMES + 3)]
    assert searches.count("zone") >= 3 and searches.count("idle") >= IDLE_MAX_FRAMES - 2
    picture = tracker._empty_zone
    assert picture is not None and picture.any()
    tracker.reset()
    assert not picture.any(), "the small picture of the lane is zeroized on reset"


# --- the real models ------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut_frame(demo_photos) -> np.ndarray:
    image = cv2.imread(str(demo_photos / "astronaut.png"))
    return place_in_canvas(cv2.resize(image, None, fx=0.6, fy=0.6), (1280, 720))


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert", "mediapipe"])
def test_a_region_search_finds_the_face_where_the_zone_search_does(runtime, astronaut_frame):
    zone = create_detector(runtime, "full").detect(astronaut_frame)
    assert len(zone) == 1
    x0, y0, x1, y1 = zone[0].box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 2.4 * (x1 - x0)
    region = (
        round(cx - side / 2),
        round(cy - side / 2),
        round(cx + side / 2),
        round(cy + side / 2),
    )
    short = create_detector(runtime, "short", zone_width=None, min_score=0.5)
    found = short.detect_region(astronaut_frame, region)
    assert len(found) == 1 and iou(found[0].box, zone[0].box) > 0.6  # in frame pixels
    assert short.detect_region(astronaut_frame, (0, 0, 200, 200)) == []  # not there


def test_a_tone_curve_for_the_model_is_applied_to_its_copy_only(astronaut_frame):
    detector = create_detector("onnxruntime", "full", min_score=0.3)
    before = astronaut_frame.copy()
    plain = detector.detect(astronaut_frame)
    lifted = detector.detect(astronaut_frame, gamma=0.5)
    assert np.array_equal(astronaut_frame, before), "the frame itself is never changed"
    assert len(plain) == len(lifted) == 1 and lifted[0].score != plain[0].score
    assert not detector._canvas.any(), "the model's input copy is zeroized"


def test_tracking_follows_a_face_across_frames_with_the_real_models(astronaut_frame):
    tracker = create_detector(tracking=True, exposure_correction=True)
    assert isinstance(tracker, TrackingDetector)
    boxes, searches = [], []
    for dx in range(0, 60, 6):  # the traveller drifts to the side
        faces = tracker.detect(np.roll(astronaut_frame, dx, axis=1))
        boxes.append(faces[0].box if faces else None)
        searches.append(tracker.search)
    assert all(boxes) and searches[0] == "zone" and searches.count("track") >= 6
    assert boxes[-1][0] - boxes[0][0] == pytest.approx(54, abs=8)


def test_a_dark_face_is_followed_through_the_curve_that_lifts_it() -> None:
    face = make_face()
    frame = np.full((240, 320, 3), 235, np.uint8)  # a bright window behind...
    x0, y0, x1, y1 = (int(v) for v in face.box)
    frame[y0:y1, x0:x1] = 30  # ...and the traveller's face in shadow
    region = Region([[face], [face]])
    tracker = TrackingDetector(Zone([[face]]), region, zone_width=None, shadow_gamma=0.6)
    tracker.detect(frame)
    tracker.detect(frame)
    assert region.gammas[0] is not None and region.gammas[0] < 1.0
    plain = TrackingDetector(Zone([[face]]), Region([[face]]), zone_width=None)
    plain.detect(frame)
    plain.detect(frame)
    assert plain.follow.gammas == [None], "without exposure correction: no curve"
