"""A detection whose middle has colours no skin has is not a face (``detectors.skin``):
skimage's colour wheel, which BlazeFace takes for a face, through both real runtimes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from appliance.service.config import VisionConfig
from appliance.service.parts import vision_parts
from appliance.vision.camera import place_in_canvas
from appliance.vision.detectors import create_detector, skin
from appliance.vision.detectors.base import Face, face_region
from appliance.vision.selection import FrameSelector, Selection
from gate_contract.image_noise import middle_half
from tests.support import StillCamera

RUNTIMES = ("litert", "onnxruntime", "mediapipe")


def _wheel_frame() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The colour wheel, 200 px, on a grey 720p frame; and a region around it."""
    frame = np.full((720, 1280, 3), 128, np.uint8)
    frame[200:400, 500:700] = cv2.resize(data.colorwheel()[:, :, ::-1], (200, 200))
    return frame, (280, 0, 1000, 720)


@pytest.fixture(scope="module")
def parts():
    return vision_parts(VisionConfig())  # the service's detector and rules


def _watch(parts, frame: np.ndarray) -> tuple[object, list]:
    detector, rules = parts
    selector = FrameSelector(detector, rules=rules)
    seen: list = []
    selector.add_observer(seen.append)
    answer = selector.select(StillCamera(frame))
    if isinstance(answer, Selection):
        answer.frame.fill(0)
    return answer, seen


def test_the_colour_wheel_is_never_the_traveller(parts, monkeypatch) -> None:
    frame, region = _wheel_frame()
    short = create_detector("onnxruntime", "short", zone_width=None, min_score=0.5)
    assert short.detect_region(frame, region), "the short-range model takes it for a face"
    answer, seen = _watch(parts, frame)
    assert not isinstance(answer, Selection)
    assert all(p.box is None for p in seen)  # never followed, never measured
    monkeypatch.setattr(skin, "MAX_SKIN_COLOURFULNESS", float("inf"))
    _, fooled = _watch(parts, frame)
    assert any(p.box is not None for p in fooled)  # without the rule it is the traveller


def _head(photo: np.ndarray, face_px: int) -> np.ndarray:
    """The head of the photo's face (1.8 face widths a side), the face ``face_px`` wide."""
    detector = create_detector("onnxruntime", "full", zone_width=None)
    face = max(detector.detect(photo), key=lambda f: f.area)
    x0, y0, x1, y1 = face.box
    side = 1.8 * (x1 - x0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a, b = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    crop = photo[b : int(cy + side / 2), a : int(cx + side / 2)]
    scale = face_px * 1.8 / crop.shape[1]
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _paint(frame: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Face paint, half green, half blue (no skin's colours), over the middle of ``box``
    (brightness kept)."""
    x0, y0, x1, y1 = box
    patch = frame[y0:y1, x0:x1]
    ycc = cv2.cvtColor(patch, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    half = ycc.shape[1] // 2
    ycc[:, :half, 1:] = 0.5 * ycc[:, :half, 1:] + 0.5 * np.float32([40, 60])
    ycc[:, half:, 1:] = 0.5 * ycc[:, half:, 1:] + 0.5 * np.float32([90, 200])
    patch[:] = cv2.cvtColor(np.clip(ycc, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2BGR)


def test_face_paint_does_not_hide_a_companion(parts, demo_photos) -> None:
    """The attack: a second person paints their face so that the rule above takes them
    for no face, and the traveller beside them is captured as if alone."""
    frame = np.full((720, 1280, 3), 118, np.uint8)
    traveller = _head(cv2.imread(str(demo_photos / "obama.jpg")), 150)
    companion = _head(cv2.imread(str(demo_photos / "biden.jpg")), 140)
    th, tw = traveller.shape[:2]
    frame[220 : 220 + th, 560 - tw // 2 : 560 - tw // 2 + tw] = traveller
    ch, cw = companion.shape[:2]
    frame[230 : 230 + ch, 740 : 740 + cw] = companion
    side = cw / 1.8  # the companion's face box: the middle 1/1.8 of its head crop
    x0, y0 = round(740 + 0.4 * side + 0.15 * side), round(230 + 0.4 * side + 0.15 * side)
    _paint(frame, (x0, y0, round(x0 + 0.7 * side), round(y0 + 0.7 * side)))
    detector, _ = parts
    painted = [f for f in detector.detect_zone(frame) if f.box[0] > 700]
    assert painted and not skin.skin_coloured(frame, painted[0])  # the rule is in play
    answer, seen = _watch(parts, frame)
    assert not isinstance(answer, Selection)
    assert any("single_face" in p.failures for p in seen)  # "one at a time"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_real_faces_are_skin(runtime: str, demo_photos) -> None:
    """Every face either runtime finds in the demo photos may be the traveller."""
    detector = create_detector(runtime, "full", zone_width=None)
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "astronaut.png"):
        frame = place_in_canvas(cv2.imread(str(demo_photos / name)), (1280, 720))
        faces = detector.detect(frame)
        assert faces and skin.only_skin(frame, faces) == faces, name


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


def test_a_face_under_red_light_is_still_skin(demo_photos) -> None:
    """A gate under red LED light (no white balance): the whole frame is red, so the face
    is measured from the scene's cast, not from grey, and stays a face."""
    frame = place_in_canvas(cv2.imread(str(demo_photos / "obama2.jpg")), (1280, 720))
    linear = (frame / 255.0) ** 2.2 * np.array([0.1, 0.3, 1.0])  # BGR gains
    red = (np.clip(linear, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    (face,) = create_detector("onnxruntime", "full", zone_width=None).detect(red)[:1]
    x0, y0, x1, y1 = (int(v) for v in face.box)
    middle = red[
        y0 + (y1 - y0) // 4 : y1 - (y1 - y0) // 4, x0 + (x1 - x0) // 4 : x1 - (x1 - x0) // 4
    ]
    assert skin.colourfulness(middle) > skin.MAX_SKIN_COLOURFULNESS  # from grey: "painted"
    assert skin.skin_coloured(red, face)  # from the scene's own colour: skin


def _saturated(frame: np.ndarray, factor: float) -> np.ndarray:
    """``frame`` through a camera whose colour saturation is turned up ``factor`` times."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def _split_lit(frame: np.ndarray) -> np.ndarray:
    """``frame`` lit red from the left and blue from the right (no white balance)."""
    linear = (frame / 255.0) ** 2.2
    half = frame.shape[1] // 2
    linear[:, :half] *= np.array([0.3, 0.35, 1.0]) / 0.5
    linear[:, half:] *= np.array([1.0, 0.5, 0.25]) / 0.5
    return (np.clip(linear, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)


@pytest.mark.parametrize("light", ["saturated", "split"])
def test_a_vivid_face_is_still_skin(light: str, demo_photos) -> None:
    """Turned-up saturation, or red and blue light from either side, make a face as
    colourful as paint; its hues are still skin's (red to orange), so it stays a face."""
    frame = place_in_canvas(cv2.imread(str(demo_photos / "obama2.jpg")), (1280, 720))
    frame = _saturated(frame, 2.0) if light == "saturated" else _split_lit(frame)
    (face,) = create_detector("onnxruntime", "full", zone_width=None).detect(frame)[:1]
    middle = middle_half(face_region(frame, face))[::2, ::2]
    cast = skin.scene_cast(frame)
    assert skin.colourfulness(middle, cast) > skin.MAX_SKIN_COLOURFULNESS  # "painted" by that
    assert skin.skin_hue_share(middle, cast) >= skin.MIN_SKIN_HUE_SHARE
    assert skin.skin_coloured(frame, face)


def test_skin_hue_share_counts_skin_hues_only() -> None:
    no_cast = np.zeros(2)
    skin_patch = np.full((40, 40, 3), (120, 140, 185), np.uint8)  # BGR
    assert skin.skin_hue_share(skin_patch, no_cast) == 1.0
    blue_green = data.colorwheel()[:, :, ::-1][185:, :185].copy()  # the wheel's cold quarter
    before = blue_green.copy()
    assert skin.skin_hue_share(blue_green, no_cast) < 0.1
    assert np.array_equal(blue_green, before)  # read only
    grey = np.full((40, 40, 3), 90, np.uint8)
    assert skin.skin_hue_share(grey, no_cast) == 1.0  # no colour at all: nothing against it
    speckled = grey.copy()
    speckled[:, ::5] = (230, 230, 0)  # a few vivid cyan columns in grey: cyan is no skin hue
    assert skin.skin_hue_share(speckled, no_cast) == 0.0


def test_hues_are_seen_from_the_scene_cast() -> None:
    """Skin's colour seen from a stronger cast of the same colour is no longer skin's hue:
    the share is measured against the cast, not against grey."""
    patch = np.full((40, 40, 3), (120, 140, 185), np.uint8)
    orange_scene = np.full((64, 64, 3), (40, 120, 250), np.uint8)
    assert skin.skin_hue_share(patch, skin.scene_cast(orange_scene)) == 0.0


@pytest.mark.parametrize("degrees", range(0, 360, 5))
def test_a_turned_colour_wheel_is_never_sent(parts, degrees: int) -> None:
    """Turned so that its warm part faces the camera, the wheel still has few of skin's
    hues (at 140-145 degrees, 300 px, the first version of the hue rule sent it)."""
    wheel = data.colorwheel()[:, :, ::-1]
    turn = cv2.getRotationMatrix2D((wheel.shape[1] / 2, wheel.shape[0] / 2), degrees, 1.0)
    turned = cv2.warpAffine(wheel, turn, wheel.shape[1::-1], borderValue=(0, 0, 0))
    frame = np.full((720, 1280, 3), 128, np.uint8)
    frame[200:500, 500:800] = cv2.resize(turned, (300, 300))
    answer, _ = _watch(parts, frame)
    assert not isinstance(answer, Selection)
