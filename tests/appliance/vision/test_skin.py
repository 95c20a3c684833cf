"""A detection whose middle has colours no skin has is not a face (``detectors.skin``):
skimage's colour wheel, which BlazeFace takes for a face, through both real runtimes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from appliance.vision.camera import place_in_canvas
from appliance.vision.detectors import create_detector, skin
from appliance.vision.detectors.base import Face

RUNTIMES = ("onnxruntime", "mediapipe")


def _wheel_frame() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The colour wheel, 200 px, on a grey 720p frame; and a region around it."""
    frame = np.full((720, 1280, 3), 128, np.uint8)
    frame[200:400, 500:700] = cv2.resize(data.colorwheel()[:, :, ::-1], (200, 200))
    return frame, (280, 0, 1000, 720)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_colour_wheel_is_no_face_to_either_runtime(
    runtime: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, region = _wheel_frame()
    short = create_detector(runtime, "short", zone_width=None, min_score=0.5)
    monkeypatch.setattr(skin, "MAX_SKIN_COLOURFULNESS", float("inf"))
    fooled = short.detect_region(frame, region) + short.detect(frame)
    if not fooled:
        pytest.skip(f"{runtime}'s short-range model does not take this wheel for a face")
    monkeypatch.undo()
    assert short.detect_region(frame, region) == [] and short.detect(frame) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_real_faces_are_still_found(runtime: str, demo_photos) -> None:
    for name in ("obama.jpg", "biden.jpg", "astronaut.png"):
        photo = cv2.imread(str(demo_photos / name))
        frame = place_in_canvas(photo, (1280, 720))
        assert create_detector(runtime, "full", zone_width=None).detect(frame), name


def test_colourfulness_is_zero_for_grey_and_high_for_the_wheel(demo_photos) -> None:
    grey = np.full((60, 60, 3), 90, np.uint8)
    assert skin.colourfulness(grey) == 0.0 and skin.colourfulness(grey[:0]) == 0.0
    wheel = data.colorwheel()[:, :, ::-1].copy()
    assert skin.colourfulness(wheel) > 1.5 * skin.MAX_SKIN_COLOURFULNESS
    before = wheel.copy()
    skin.colourfulness(wheel)
    assert np.array_equal(wheel, before)  # read only: the caller's pixels are left alone


def test_only_the_painted_detection_is_dropped() -> None:
    frame, _ = _wheel_frame()
    frame[450:650, 100:300] = (120, 140, 185)  # a skin-like patch, BGR
    keypoints = np.zeros((6, 2), np.float32)
    painted = Face(0.7, (500.0, 200.0, 700.0, 400.0), keypoints)
    plain = Face(0.9, (100.0, 450.0, 300.0, 650.0), keypoints)
    outside = Face(0.9, (-50.0, -50.0, -10.0, -10.0), keypoints)  # nothing to read: kept
    assert skin.only_skin(frame, [painted, plain, outside]) == [plain, outside]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert skin.only_skin(grey, [painted]) == [painted]  # no colour to judge by
