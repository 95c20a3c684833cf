"""Both recognizers on real photos, MobileFaceNet's known answer and model integrity."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from matching_service.errors import NoFaceFound, RecognizerUnavailable
from matching_service.gallery import Gallery
from matching_service.recognizers import (
    RECOGNIZERS,
    ensure_available,
    model_store,
    open_recognizer,
    recognizer_info,
)
from matching_service.recognizers import mobilefacenet as mfn_module
from tests.support import record_outputs, require_recognizer


@pytest.fixture(scope="module")
def mobilefacenet():
    return require_recognizer("mobilefacenet")


def encode(recognizer, path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    try:
        return recognizer.encode(image)
    finally:
        image.fill(0)


def test_same_person_matches_and_others_do_not_at_the_1to1_threshold(recognizer, demo_photos):
    info = recognizer.info
    obama, obama2, biden = (
        encode(recognizer, demo_photos / n) for n in ("obama.jpg", "obama2.jpg", "biden.jpg")
    )
    assert obama.shape == (info.dimension,) and obama.dtype == np.float32
    threshold = Gallery(":memory:", info).threshold_1to1(1)
    same = info.distances(obama, obama2[None])[0]
    other = info.distances(obama, biden[None])[0]
    assert same <= threshold < other, (info.template_id, same, other, threshold)


def test_no_face_is_a_clear_error(recognizer):
    with pytest.raises(NoFaceFound):
        recognizer.encode(np.full((240, 320, 3), 118, np.uint8))


def test_template_ids_name_backend_and_model():
    dlib, mfn = (recognizer_info(n) for n in RECOGNIZERS)
    assert dlib.template_id.startswith("dlib-resnet-128-unit/") and dlib.dimension == 128
    assert mfn.template_id == f"mobilefacenet-192/{model_store.MOBILEFACENET_TFLITE_SHA256[:12]}"
    assert mfn.metric == "cosine" and mfn.dimension == 192


def test_unknown_recognizer_is_refused_by_name():
    with pytest.raises(RecognizerUnavailable, match=r"unknown recognizer 'arcface'.*dlib"):
        open_recognizer("arcface")


def test_fusion_is_the_mean_of_unit_templates_renormalised():
    info = recognizer_info("mobilefacenet")
    a, b = np.eye(192, dtype=np.float32)[:2]
    fused = info.fuse([a, b])
    np.testing.assert_allclose(fused[:2], [2**-0.5, 2**-0.5], rtol=1e-6)
    assert info.distances(fused, np.stack([a, fused]))[1] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        info.fuse([])


def test_both_recognizers_make_unit_templates(recognizer, demo_photos):
    assert np.linalg.norm(encode(recognizer, demo_photos / "biden.jpg")) == pytest.approx(1.0)


def test_the_converted_model_passes_its_known_answer(mobilefacenet):
    report = model_store.known_answer(mobilefacenet.embed)
    assert report["min_cosine"] > 0.99999 and report["channel_swapped_cosine"] < 0.99


def test_known_answer_refuses_a_wrong_conversion(mobilefacenet):
    """A model fed the wrong channel order (a classic conversion bug) must be refused."""
    swapped = lambda batch: mobilefacenet.embed(np.ascontiguousarray(batch[:, ::-1]))  # noqa: E731
    with pytest.raises(RecognizerUnavailable, match="differ from the LiteRT reference"):
        model_store.known_answer(swapped)

    def batch_dependent(batch):  # a batch dimension that was not really made dynamic
        out = mobilefacenet.embed(batch)
        return out + (len(batch) == 1)

    with pytest.raises(RecognizerUnavailable, match="batch sizes"):
        model_store.known_answer(batch_dependent)


def test_an_altered_or_missing_model_is_refused(mobilefacenet, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(model_store.store_dir(), copy)
    assert model_store.verified(model_store.MOBILEFACENET, copy).is_file()
    model = copy / model_store.MOBILEFACENET.file
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(RecognizerUnavailable, match="corrupt or was replaced"):
        mfn_module.MobileFaceNetRecognizer(copy)
    model.unlink()
    with pytest.raises(RecognizerUnavailable, match="make setup"):
        model_store.verified(model_store.MOBILEFACENET, copy)


def test_ensure_available_checks_files_without_loading(mobilefacenet):
    assert ensure_available("mobilefacenet").name == "mobilefacenet"


def test_mobilefacenet_leaves_no_pixels_in_its_buffers(mobilefacenet, demo_photos, monkeypatch):
    """Every buffer encode() makes (tensors, chip, copies) is all zeros once it returns."""
    made = record_outputs(monkeypatch, cv2, "warpAffine", "resize", "cvtColor")
    fed: list[np.ndarray] = []
    for owner in (mobilefacenet, mobilefacenet._finder):
        session = owner._session

        class Spy:
            def __init__(self, session=session):
                self._session = session

            def run(self, outputs, feeds):
                fed.extend(feeds.values())
                return self._session.run(outputs, feeds)

        monkeypatch.setattr(owner, "_session", Spy())
    image = cv2.imread(str(demo_photos / "obama.jpg"))  # large: exercises the shrink path
    mobilefacenet.encode(image)
    buffers = [a for a in made + fed if isinstance(a, np.ndarray) and a.size >= 64 * 64]
    assert len(fed) == 2 and buffers
    assert all(not a.any() for a in buffers), [a.shape for a in buffers if a.any()]
    assert image.any(), "the caller's image stays the caller's to zeroize"


def test_mobilefacenet_wipes_the_chip_when_its_input_cannot_be_made(
    mobilefacenet, demo_photos, monkeypatch
):
    """Out of memory for the network's input: the aligned chip is zeroized all the same."""
    chips = record_outputs(monkeypatch, cv2, "warpAffine")

    def no_memory(chip):
        raise MemoryError("no room for the network's input")

    monkeypatch.setattr(mfn_module, "_network_input", no_memory)
    image = cv2.imread(str(demo_photos / "obama.jpg"))
    with pytest.raises(MemoryError):
        mobilefacenet.encode(image)
    assert chips and all(not chip.any() for chip in chips)
