"""Face-metered exposure: the controller's rules on scripted face grey levels, and the
chain from a real photo through the real detector, the quality gate and a real
``FrameSelector`` to the camera's exposure compensation."""

from __future__ import annotations

import dataclasses
import logging
import math

import cv2
import numpy as np
import pytest

from appliance.errors import CameraError
from appliance.vision.camera import ReconnectingSource, ReplaySource, place_in_canvas
from appliance.vision.detectors.base import face_region
from appliance.vision.exposure import MAX_EV, FaceMeteredExposure, face_metered_exposure
from appliance.vision.frame_pump import FramePump
from appliance.vision.progress import CaptureProgress
from appliance.vision.quality import assess
from appliance.vision.selection import FrameSelector, SelectionRules
from appliance.vision.tone import DARK_FACE_MEAN
from testbed.testing import capture_progress
from tests.support import StillCamera

DARK, NORMAL, BRIGHT = 30.0, 120.0, 230.0  # face grey levels as the camera recorded them
CANVAS = (1280, 720)


class FakeCamera:
    """Records each exposure compensation asked for; refuses the next ``refuse`` ones."""

    controls_exposure = True

    def __init__(self, refuse: int = 0, error: Exception | None = None) -> None:
        self.requests: list[float] = []
        self.refuse = refuse
        self.error = error or CameraError("Pi camera refused exposure compensation: gone")

    def set_exposure_compensation(self, ev: float) -> None:
        if self.refuse:
            self.refuse -= 1
            raise self.error
        self.requests.append(ev)


def seen(grey: float | None, frame: int = 2) -> CaptureProgress:
    """One frame's progress with the followed face at ``grey`` (None: nobody in view),
    by default not the first of a capture (frame 1 starts the next traveller afresh)."""
    if grey is None:
        return dataclasses.replace(capture_progress("no_face", box=None), frame=frame)
    return dataclasses.replace(capture_progress(None), face_grey=grey, frame=frame)


def feed(controller: FaceMeteredExposure, *greys: float | None) -> None:
    for grey in greys:
        controller(seen(grey))


def test_the_next_traveller_starts_on_the_camera_s_own_metering() -> None:
    """A hooded traveller or a dark card raised the exposure: the traveller after them,
    whose capture begins at frame 1, is not filmed one stop too bright."""
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera)
    feed(controller, DARK, DARK, DARK)
    assert camera.requests == [1.0]
    controller(seen(150.0, frame=1))  # the next traveller, seen at once (a queue)
    assert camera.requests == [1.0, 0.0] and controller.ev == 0.0
    controller(seen(150.0, frame=1))
    assert camera.requests == [1.0, 0.0]  # already there: nothing asked


def test_the_helper_gives_no_face_grey_without_a_face() -> None:
    assert seen(None).face_grey is None and seen(DARK).face_grey == DARK


# --- raising for a dark face --------------------------------------------------------


@pytest.mark.parametrize("raise_after", [1, 3, 5])
def test_raises_exactly_after_raise_after_dark_frames(raise_after: int) -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera, raise_after=raise_after)
    feed(controller, *[DARK] * (raise_after - 1))
    assert camera.requests == [] and controller.ev == 0.0
    feed(controller, DARK)
    assert camera.requests == [1.0] and controller.ev == 1.0


def test_a_face_just_at_the_dark_threshold_is_not_dark() -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera)
    assert controller.dark_below == DARK_FACE_MEAN[1]  # the tone curve's top
    feed(controller, *[controller.dark_below] * 10)
    assert camera.requests == []
    feed(controller, *[controller.dark_below - 0.5] * 3)
    assert camera.requests == [1.0]


@pytest.mark.parametrize("between", [NORMAL, BRIGHT, None])
def test_the_dark_frames_must_come_in_a_row(between: float | None) -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera)
    feed(controller, DARK, DARK, between, DARK, DARK, between, DARK, DARK)
    assert camera.requests == []
    feed(controller, DARK)
    assert camera.requests == [1.0]


def test_a_normally_lit_face_is_left_alone() -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera)
    feed(controller, *[NORMAL] * 200)
    assert camera.requests == [] and controller.ev == 0.0


def test_after_a_change_the_camera_has_settle_frames_then_raise_after_more() -> None:
    """The frames right after a request still show the old exposure: counted, they would
    step again before the first step was seen (+2 asked for before +1 arrived)."""
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera, max_ev=2.0, raise_after=3, settle_frames=8)
    feed(controller, DARK, DARK, DARK)
    assert camera.requests == [1.0]
    feed(controller, *[DARK] * 8)  # the camera is still settling on +1: not counted
    assert camera.requests == [1.0]
    feed(controller, DARK, DARK)
    assert camera.requests == [1.0]
    feed(controller, DARK)
    assert camera.requests == [1.0, 2.0]


# --- the attack: something dark held up to the face to over-expose the camera --------


@pytest.mark.parametrize(("max_ev", "steps"), [(1.0, [1.0]), (1.5, [1.0, 1.5]), (2.0, [1.0, 2.0])])
def test_never_above_max_ev_however_long_the_face_stays_dark(
    max_ev: float, steps: list[float]
) -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera, max_ev=max_ev)
    feed(controller, *[5.0] * 1000)  # a black card held in front of the face
    assert camera.requests == steps  # one request per step, and none past the cap
    assert controller.ev == max_ev


def test_the_cap_cannot_be_set_above_two_stops() -> None:
    assert MAX_EV == 2.0
    with pytest.raises(ValueError):
        FaceMeteredExposure(FakeCamera(), max_ev=MAX_EV + 0.5)
    camera = FakeCamera()
    controller = face_metered_exposure(camera, MAX_EV)
    assert controller is not None
    feed(controller, *[5.0] * 1000)
    assert max(camera.requests) == MAX_EV


# --- stepping down and letting go ---------------------------------------------------


def test_steps_down_after_lower_after_bright_frames_and_never_below_zero() -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera, max_ev=1.5, lower_after=2, settle_frames=0)
    feed(controller, *[DARK] * 6)
    assert camera.requests == [1.0, 1.5]
    feed(controller, BRIGHT)
    assert camera.requests == [1.0, 1.5]  # one bright frame is not enough
    feed(controller, BRIGHT)
    assert camera.requests == [1.0, 1.5, 0.5] and controller.ev == 0.5
    feed(controller, BRIGHT, BRIGHT)
    assert camera.requests == [1.0, 1.5, 0.5, 0.0] and controller.ev == 0.0
    feed(controller, *[BRIGHT] * 50)  # a bright face at the camera's own metering
    assert camera.requests == [1.0, 1.5, 0.5, 0.0]


def test_a_bright_face_at_the_cameras_own_metering_is_not_darkened() -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera)
    feed(controller, *[250.0] * 100)
    assert camera.requests == []


def test_bright_frames_must_come_in_a_row() -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera, lower_after=2, settle_frames=0)
    feed(controller, DARK, DARK, DARK)
    feed(controller, BRIGHT, NORMAL, BRIGHT, None, BRIGHT)
    assert camera.requests == [1.0]
    feed(controller, BRIGHT)
    assert camera.requests == [1.0, 0.0]


def test_back_to_zero_after_release_after_frames_without_a_face() -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera, max_ev=2.0, release_after=30, settle_frames=0)
    feed(controller, *[DARK] * 6)
    assert controller.ev == 2.0
    feed(controller, *[None] * 29)
    assert camera.requests == [1.0, 2.0]
    feed(controller, NORMAL)  # someone in view: the count starts again
    feed(controller, *[None] * 29)
    assert camera.requests == [1.0, 2.0]
    feed(controller, None)
    assert camera.requests == [1.0, 2.0, 0.0] and controller.ev == 0.0  # straight to 0
    feed(controller, *[None] * 100)  # nobody for a long time: nothing more to give back
    assert camera.requests == [1.0, 2.0, 0.0]


# --- a camera that refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [CameraError("gone"), ValueError("out of range"), RuntimeError("libcamera")]
)
def test_a_refusing_camera_leaves_ev_unchanged_and_the_capture_running(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    camera = FakeCamera(refuse=1, error=error)
    controller = FaceMeteredExposure(camera)
    with caplog.at_level(logging.WARNING, logger="gate.camera.exposure"):
        feed(controller, DARK, DARK, DARK)  # must not raise into the selector
    assert controller.ev == 0.0 and camera.requests == []
    assert any("refused" in r.getMessage() for r in caplog.records)
    feed(controller, DARK, DARK, DARK)  # asked again after as many frames
    assert controller.ev == 1.0 and camera.requests == [1.0]


def test_a_refused_step_down_keeps_the_ev_the_camera_has() -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera, lower_after=2, settle_frames=0)
    feed(controller, DARK, DARK, DARK)
    camera.refuse = 1
    feed(controller, BRIGHT, BRIGHT)
    assert controller.ev == 1.0 and camera.requests == [1.0]


# --- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_ev": 0.0},
        {"max_ev": -1.0},
        {"max_ev": 2.5},
        {"max_ev": math.nan},
        {"max_ev": 1.0, "step_ev": 0.0},
        {"max_ev": 1.0, "step_ev": -0.5},
        {"max_ev": 1.0, "step_ev": 1.5},
        {"dark_below": 200.0, "bright_above": 200.0},
        {"dark_below": 210.0, "bright_above": 200.0},
        {"raise_after": 0},
        {"lower_after": 0},
        {"release_after": 0},
        {"release_after": -3},
        {"settle_frames": -1},
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FaceMeteredExposure(FakeCamera(), **kwargs)


def test_a_cap_below_one_stop_is_the_step() -> None:
    camera = FakeCamera()
    controller = FaceMeteredExposure(camera, max_ev=0.5)
    assert controller.step_ev == 0.5
    feed(controller, *[DARK] * 20)
    assert camera.requests == [0.5]


# --- which sources get a controller -----------------------------------------------------


def test_no_controller_for_a_replay_or_when_off() -> None:
    replay = ReplaySource([])
    pump = FramePump(ReplaySource([]))
    try:
        assert face_metered_exposure(replay, 1.0) is None  # a replay has no exposure
        assert face_metered_exposure(pump, 0.0) is None  # face_exposure_ev = 0: off
        assert face_metered_exposure(pump, -1.0) is None
        assert face_metered_exposure(object(), 1.0) is None
    finally:
        pump.close()
        replay.close()


def test_a_controller_for_a_pump_and_a_reconnecting_camera() -> None:
    reconnecting = ReconnectingSource(lambda: ReplaySource([]), controls_exposure=True)
    pump = FramePump(ReconnectingSource(lambda: ReplaySource([]), controls_exposure=True))
    try:
        for source, max_ev in ((pump, 1.0), (reconnecting, 0.5)):
            controller = face_metered_exposure(source, max_ev)
            assert isinstance(controller, FaceMeteredExposure)
            assert controller.camera is source and controller.max_ev == max_ev
    finally:
        pump.close()
        reconnecting.close()


def test_no_controller_for_a_camera_that_would_ignore_it() -> None:
    """An OpenCV device behind the reconnecting source and the pump: they pass requests
    on, and the device ignores them; the gate must not log exposure changes it never made."""
    usb = FramePump(ReconnectingSource(lambda: ReplaySource([])))
    try:
        assert not usb.controls_exposure
        assert face_metered_exposure(usb, 1.0) is None
    finally:
        usb.close()


# --- a real face through the real detector, the quality gate and a real selector ----------


@pytest.fixture(scope="module")
def portrait(demo_photos) -> np.ndarray:
    """A frontal portrait, the face about 160 px wide in a 720p frame."""
    image = cv2.imread(str(demo_photos / "obama2.jpg"))
    return cv2.resize(image, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)


def lit(portrait: np.ndarray, gain: float) -> np.ndarray:
    """The portrait in a 720p frame, its exposure scaled by ``gain``."""
    scaled = np.clip(portrait.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return place_in_canvas(scaled, CANVAS)


def watched(detector, camera: FakeCamera) -> tuple[FrameSelector, list[CaptureProgress]]:
    """A selector as the service builds it (exposure correction on), with the controller
    and a recorder registered; steady frames high enough that it looks at every frame."""
    selector = FrameSelector(
        detector, rules=SelectionRules(steady_frames=8, exposure_correction=True)
    )
    seen: list[CaptureProgress] = []
    selector.add_observer(seen.append)
    controller = face_metered_exposure(camera, 1.0)
    assert controller is not None
    selector.add_observer(controller)
    return selector, seen


def test_a_dark_face_makes_the_camera_expose_one_stop_more(detector, portrait) -> None:
    camera = FakeCamera()
    selector, seen = watched(detector, camera)
    selector.select(StillCamera(lit(portrait, 0.35), 6), max_frames=6)
    assert len(seen) == 6
    greys = [p.face_grey for p in seen]
    assert all(g is not None and g < DARK_FACE_MEAN[1] for g in greys), greys
    assert camera.requests == [1.0]


def test_a_normally_lit_face_does_not_change_the_exposure(detector, portrait) -> None:
    camera = FakeCamera()
    selector, seen = watched(detector, camera)
    selector.select(StillCamera(lit(portrait, 1.0), 6), max_frames=6)
    assert len(seen) == 6
    assert all(p.face_grey is not None and p.face_grey > DARK_FACE_MEAN[1] for p in seen)
    assert camera.requests == []


def test_an_empty_scene_reports_no_face_grey(detector) -> None:
    camera = FakeCamera()
    selector, seen = watched(detector, camera)
    selector.select(StillCamera(np.full((CANVAS[1], CANVAS[0], 3), 20, np.uint8), 3), max_frames=3)
    assert [p.face_grey for p in seen] == [None, None, None]
    assert camera.requests == []  # a dark empty hall is not a dark face


def test_face_grey_is_the_face_as_recorded_before_the_tone_curve(detector, portrait) -> None:
    frame = lit(portrait, 0.35)
    faces = detector.detect(frame)
    report = assess(frame, faces, exposure_correction=True)
    assert report.gamma < 1.0  # the curve lifted this face ...
    assert report.face_grey < DARK_FACE_MEAN[1] < report.measures["exposure"]  # ... not this
    recorded = cv2.cvtColor(face_region(frame, report.face), cv2.COLOR_BGR2GRAY)
    assert report.face_grey == pytest.approx(float(recorded.mean()))
    plain = assess(frame, faces, exposure_correction=False)
    assert plain.gamma == 1.0 and plain.face_grey == pytest.approx(plain.measures["exposure"])
    assert plain.face_grey == pytest.approx(report.face_grey)


def test_the_selector_reports_the_face_grey_of_its_quality_report(detector, portrait) -> None:
    frame = lit(portrait, 0.35)
    report = assess(frame, detector.detect(frame), exposure_correction=True)
    selector, seen = watched(detector, FakeCamera())
    selector.select(StillCamera(frame, 1), max_frames=1)
    assert seen[0].face_grey == pytest.approx(report.face_grey)
    assert seen[0].to_dict()["face_grey"] == round(report.face_grey, 1)
