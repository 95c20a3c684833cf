"""LiteRT runs the same BlazeFace as onnxruntime: the same faces, and no pixels left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from appliance.errors import ModelError
from appliance.vision.camera import place_in_canvas
from appliance.vision.detectors import (
    blazeface,
    create_detector,
    litert_runtime,
    mediapipe_tasks,
)
from appliance.vision.detectors.litert_runtime import LiteRTFaceDetector
from appliance.vision.detectors.onnx_runtime import OnnxFaceDetector
from appliance.vision.models import MANIFEST, model_path, sha256_file

PHOTOS = ("astronaut.png", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")


@pytest.mark.parametrize("variant", ["short", "full"])
def test_litert_finds_what_onnxruntime_finds(variant: str, demo_photos) -> None:
    """One model, two runtimes: every face, box and landmark within a hundredth of a pixel."""
    onnx = OnnxFaceDetector(variant, zone_width=None, min_score=0.3)
    litert = LiteRTFaceDetector(variant, zone_width=None, min_score=0.3)
    compared = 0
    for name in PHOTOS:
        photo = cv2.imread(str(demo_photos / name))
        for frame in (photo, place_in_canvas(photo, (1280, 720))):
            expected, found = onnx.detect(frame), litert.detect(frame)
            assert len(found) == len(expected), name
            for a, b in zip(expected, found, strict=True):
                assert np.allclose(a.box, b.box, atol=0.01), name
                assert np.allclose(a.keypoints, b.keypoints, atol=0.01), name
                assert a.score == pytest.approx(b.score, abs=1e-4), name
                compared += 1
    assert compared >= len(PHOTOS)


def test_no_pixels_stay_in_litert_buffers(demo_photos) -> None:
    detector = LiteRTFaceDetector("short", zone_width=None)
    frame = place_in_canvas(cv2.imread(str(demo_photos / "obama.jpg")), (1280, 720))
    assert detector.detect(frame)
    assert not detector._canvas.any()
    assert not detector._rgb.any()
    assert not detector._input_tensor().any()  # the interpreter's own input buffer


def test_no_pixels_stay_in_onnxruntime_buffers(monkeypatch, demo_photos) -> None:
    detector = OnnxFaceDetector("short", zone_width=None)
    made: list[np.ndarray] = []
    real_blob = cv2.dnn.blobFromImage

    def recording_blob(*args, **kwargs):
        made.append(real_blob(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(cv2.dnn, "blobFromImage", recording_blob)
    frame = place_in_canvas(cv2.imread(str(demo_photos / "obama.jpg")), (1280, 720))
    assert detector.detect(frame)
    assert made and not any(tensor.any() for tensor in made)
    assert not detector._canvas.any()


def test_only_the_pinned_file_runs_on_litert(model_copy) -> None:
    """LiteRT runs the upstream file itself: another file is refused even when whoever
    swapped it rewrote the manifest to match."""
    path = model_path("short", "litert", model_copy)
    path.write_bytes(model_path("short", "mediapipe", model_copy).read_bytes())  # a model
    manifest = json.loads((model_copy / MANIFEST).read_text())
    manifest["short/litert"]["sha256"] = sha256_file(path)
    (model_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="not the pinned face_detection_short_range"):
        LiteRTFaceDetector("short", models_dir=model_copy)


def test_a_model_litert_cannot_load_is_a_clear_error(monkeypatch) -> None:
    def refuse(**_):
        raise ValueError("Model provided has model identifier 'xxxx'")

    monkeypatch.setattr(litert_runtime, "Interpreter", refuse)
    with pytest.raises(ModelError, match=r"LiteRT could not load .*model identifier"):
        LiteRTFaceDetector("short")


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert", "mediapipe"])
def test_the_bytes_checked_are_the_bytes_run(runtime, monkeypatch, model_copy, demo_photos):
    """A file replaced between the manifest check and the load is never loaded: every
    runtime gets the bytes that were hashed (onnxruntime used to open the path again)."""
    module = mediapipe_tasks if runtime == "mediapipe" else blazeface
    real_check = module.verified_model

    def check_then_swap(*args):
        model = real_check(*args)
        model.path.write_bytes(b"not a model" * 1000)
        return model

    monkeypatch.setattr(module, "verified_model", check_then_swap)
    detector = create_detector(runtime, "short", zone_width=None, models_dir=model_copy)
    assert detector.detect(cv2.imread(str(demo_photos / "obama.jpg")))


def test_the_tracker_runs_on_litert(demo_photos) -> None:
    detector = create_detector("litert", tracking=True, exposure_correction=True)
    frame = place_in_canvas(cv2.imread(str(demo_photos / "biden.jpg")), (1280, 720))
    seen = [detector.detect(frame) for _ in range(4)]
    assert all(len(faces) == 1 for faces in seen)


def test_loading_prints_nothing() -> None:
    """LiteRT's C++ announces its CPU delegate on stderr, once a process, at the first
    load (hence a fresh process): held back."""
    load = "from appliance.vision.detectors import create_detector; create_detector('litert')"
    done = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_what_others_write_while_a_model_loads_gets_through(capfd, monkeypatch) -> None:
    real_interpreter = litert_runtime.Interpreter

    def interpreter_beside_a_logger(**kwargs):
        os.write(2, b"another thread's log line\n")
        return real_interpreter(**kwargs)

    monkeypatch.setattr(litert_runtime, "Interpreter", interpreter_beside_a_logger)
    LiteRTFaceDetector("short")
    assert capfd.readouterr().err == "another thread's log line\n"
