"""Every detector runtime on real images, the capture zone, and model integrity checks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from appliance.errors import ModelError
from appliance.vision.camera import bgr_frame, place_in_canvas
from appliance.vision.detectors import create_detector
from appliance.vision.detectors.onnx_runtime import OnnxFaceDetector
from appliance.vision.models import MANIFEST, model_path, verified_model

RUNTIMES = ("onnxruntime", "litert", "mediapipe")


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="module")
def astronaut(demo_photos) -> np.ndarray:
    return cv2.imread(str(demo_photos / "astronaut.png"))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("variant", ["short", "full"])
def test_each_runtime_finds_the_astronaut_with_eyes_above_mouth(runtime, variant, astronaut):
    faces = create_detector(runtime, variant, zone_width=None, min_score=0.5).detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200
    right_eye, left_eye, nose, mouth = face.keypoints[:4]
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth[1]
    assert all(x0 <= p[0] <= x1 and y0 <= p[1] <= y1 for p in (right_eye, left_eye, nose))


def test_runtimes_agree_on_the_box(astronaut):
    first, *others = (
        create_detector(r, "full", zone_width=None).detect(astronaut)[0].box for r in RUNTIMES
    )
    assert all(iou(first, box) > 0.6 for box in others)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_grey_cameras_frame_is_searched_as_bgr(runtime, astronaut):
    """A near-infrared camera's single channel, as the camera source hands it on."""
    grey = cv2.cvtColor(place_in_canvas(astronaut, (1280, 720)), cv2.COLOR_BGR2GRAY)
    (face,) = create_detector(runtime).detect(bgr_frame(grey))
    assert 60 < face.width < 200


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_no_face_in_an_empty_frame(runtime):
    blank = np.full((720, 1280, 3), 118, np.uint8)
    assert create_detector(runtime).detect(blank) == []


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
@pytest.mark.parametrize("shape", [(720, 1, 3), (2000, 3, 3), (1, 1280, 3), (1, 1, 3)])
def test_a_sliver_of_a_frame_is_searched_without_error(runtime, shape):
    assert create_detector(runtime, zone_width=None).detect(np.zeros(shape, np.uint8)) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_capture_zone_reports_frame_coordinates_and_ignores_the_margins(runtime, astronaut):
    frame = place_in_canvas(astronaut, (1280, 720))
    whole = create_detector(runtime, zone_width=None).detect(frame)
    zoned = create_detector(runtime, zone_width=1.0).detect(frame)
    assert len(whole) == len(zoned) == 1
    assert iou(whole[0].box, zoned[0].box) > 0.6  # same place, in frame pixels
    off_zone = np.roll(frame, 520, axis=1)  # the face now stands right of the zone
    assert create_detector(runtime, zone_width=1.0).detect(off_zone) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_corrupt_model_is_a_clear_start_up_error(runtime, model_copy):
    path = model_path("full", runtime, model_copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt or was replaced"):
        create_detector(runtime, models_dir=model_copy)


def test_missing_model_says_how_to_get_it(model_copy):
    model_path("full", "onnxruntime", model_copy).unlink()
    with pytest.raises(ModelError, match="make setup"):
        OnnxFaceDetector("full", models_dir=model_copy)


def test_model_from_an_unpinned_source_is_refused(model_copy):
    manifest = json.loads((model_copy / MANIFEST).read_text())
    manifest["full/onnxruntime"]["source_sha256"] = "0" * 64
    (model_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="unpinned source"):
        verified_model("full", model_copy)


def test_unreadable_manifest_and_unknown_names_are_refused(model_copy):
    (model_copy / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        verified_model("full", model_copy)
    with pytest.raises(ModelError, match="unknown detector model"):
        verified_model("huge", model_copy)
    with pytest.raises(ModelError, match="unknown detector runtime"):
        create_detector("tensorflow")


def test_intermediate_downscales_are_zeroized(monkeypatch, astronaut):
    """A 4K frame is halved several times; every intermediate copy must be cleared."""
    import appliance.vision.detectors.blazeface as detector_module

    made = []
    real_resize = cv2.resize

    def recording_resize(*args, **kwargs):
        out = real_resize(*args, **kwargs)
        if out is not None and kwargs.get("dst") is None:
            made.append(out)
        return out

    frame = cv2.resize(place_in_canvas(astronaut, (1280, 720)), (3840, 2160))
    detector = create_detector(zone_width=None)
    monkeypatch.setattr(detector_module.cv2, "resize", recording_resize)
    faces = detector.detect(frame)
    assert len(faces) == 1
    assert len(made) >= 3 and all(not m.any() for m in made)
