"""MobileFaceNet (192-d, cosine): the opt-in recognizer, about 7x faster and far more accurate
than dlib's on faces-dev (see README), with a licence caveat the operator must judge.

Pipeline of ``encode`` (chosen by measurement on faces-dev, /README "Recognizers"):

1. BlazeFace full range finds the largest face (:class:`FaceFinder`).
2. dlib's 5-point shape predictor (eye corners, nose base; CC0) runs in a box derived from
   BlazeFace's, shaped like the HOG boxes it was trained on. dlib's 68-point predictor,
   which has non-commercial training-data terms, is never used.
3. A least-squares similarity transform takes the 5 points to their positions in the
   standard 112 x 112 ArcFace chip (measured once as medians over faces-dev: geometry
   only, no identity labels).
4. RGB, (x - 127.5) / 128, NCHW, onnxruntime with one thread; the output L2-normalised.

Every pixel buffer made here (RGB copy, shrunk copy, chip, tensor) is zeroized before
``encode`` returns, whatever happens. Not reachable: copies inside dlib's C++ code and
onnxruntime's arena (freed, not overwritten); the arena is disabled so that it does not
grow to, and keep, the largest batch it saw.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import dlib
import numpy as np

from gate_contract.onnx import load_onnxruntime
from matching_service.errors import NoFaceFound, RecognizerUnavailable
from matching_service.recognizers import model_store
from matching_service.recognizers.base import RecognizerInfo, require_colour_image
from matching_service.recognizers.dlib_resnet import dlib_models_folder
from matching_service.recognizers.face_finder import FaceFinder
from matching_service.recognizers.probe_noise import Box, smoothed_if_noisy

_ort = load_onnxruntime()

SIZE = model_store.MOBILEFACENET_INPUT
INFO = RecognizerInfo(
    name="mobilefacenet",
    template_id=f"mobilefacenet-192/{model_store.MOBILEFACENET_TFLITE_SHA256[:12]}",
    dimension=model_store.MOBILEFACENET_DIM,
    metric="cosine",
)
# dlib's 5 points (image-right eye outer and inner corner, image-left eye outer and inner
# corner, nose base) in the ArcFace 112 chip: medians over faces-dev.
DLIB5_IN_CHIP = np.array(
    [[78.94, 51.03], [65.67, 51.83], [31.67, 51.66], [45.08, 52.06], [55.89, 77.95]]
)
# The HOG-like box for the shape predictor, relative to BlazeFace full range's box: centre
# shift in box widths and size ratio (medians over faces-dev).
BOX_SHIFT, BOX_RATIO = (-0.029, -0.006), 0.943


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 least-squares similarity (rotation, uniform scale, shift) taking src to dst."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, singular, vt = np.linalg.svd(d.T @ s / len(src))
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rotation = u @ fix @ vt
    scale = np.trace(np.diag(singular) @ fix) / ((s**2).sum() / len(src))
    shift = mu_d - scale * rotation @ mu_s
    return np.hstack([scale * rotation, shift[:, None]])


def _network_input(chip: np.ndarray) -> np.ndarray:
    """The BGR chip as the network's NCHW RGB input, scaled to about [-1, 1]."""
    tensor = chip[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
    try:
        tensor -= 127.5
        tensor *= 1 / 128
    except BaseException:
        tensor.fill(0)
        raise
    return tensor


class MobileFaceNetRecognizer:
    """Largest face in a BGR image -> unit 192-d embedding. One per thread or worker."""

    info = INFO

    def __init__(self, models_dir: Path | None = None) -> None:
        path = model_store.verified(model_store.MOBILEFACENET, models_dir)
        options = _ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3
        try:
            self._session = _ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise RecognizerUnavailable(f"onnxruntime could not load {path}: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self._finder = FaceFinder(models_dir)
        self._shapes = dlib.shape_predictor(
            str(dlib_models_folder() / "shape_predictor_5_face_landmarks.dat")
        )
        self._lock = threading.Lock()  # the finder and dlib's predictor are not shareable

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Raw embeddings of an NCHW float32 batch (the known-answer test's entry point)."""
        return self._session.run(None, {self._input: batch})[0]

    def _points(self, image_bgr: np.ndarray, box: Box) -> np.ndarray:
        """dlib's 5 landmarks of the face the finder boxed."""
        x0, y0, x1, y1 = box
        width = x1 - x0
        cx = (x0 + x1) / 2 + BOX_SHIFT[0] * width
        cy = (y0 + y1) / 2 + BOX_SHIFT[1] * width
        half = BOX_RATIO * width / 2
        rect = dlib.rectangle(
            round(cx - half), round(cy - half), round(cx + half), round(cy + half)
        )
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)  # always a copy of its own
        try:
            shape = self._shapes(rgb, rect)
        finally:
            rgb.fill(0)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)

    def _chip(self, image_bgr: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The aligned 112 x 112 BGR chip (the caller zeroizes it)."""
        matrix = similarity(points, DLIB5_IN_CHIP)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        shrunk = None
        if scale < 0.5:  # a large photo: area-average it first, so the warp does not alias
            factor = 2 * scale
            shrunk = cv2.resize(image_bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            matrix[:, :2] /= factor
        try:
            return cv2.warpAffine(
                shrunk if shrunk is not None else image_bgr,
                matrix,
                (SIZE, SIZE),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
        finally:
            if shrunk is not None:
                shrunk.fill(0)

    def encode(self, image_bgr: np.ndarray) -> np.ndarray:
        """Unit embedding of the largest face; raises ``NoFaceFound`` when there is none."""
        require_colour_image(image_bgr)
        with self._lock:
            box = self._finder.largest(image_bgr)
            if box is None:
                raise NoFaceFound("no face found in the image")
            smoothed = smoothed_if_noisy(image_bgr, box)
            face = image_bgr if smoothed is None else smoothed
            try:
                chip = self._chip(face, self._points(face, box))
            finally:
                if smoothed is not None:
                    smoothed.fill(0)
            try:
                tensor = _network_input(chip)
            finally:
                chip.fill(0)  # also when the copy fails (no memory for it)
            try:
                raw = self.embed(tensor)[0]
            finally:
                tensor.fill(0)
        norm = float(np.linalg.norm(raw))
        if not np.isfinite(norm) or norm == 0:
            raise NoFaceFound("the face gave a degenerate embedding")
        return (raw / norm).astype(np.float32)


__all__ = ["DLIB5_IN_CHIP", "INFO", "SIZE", "MobileFaceNetRecognizer", "similarity"]
