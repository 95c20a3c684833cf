"""Where the face is in a capture or document photo: BlazeFace full range, for the service.

The MobileFaceNet backend needs a face box to place dlib's 5-point predictor in; BlazeFace
finds it in about 5 ms where dlib's HOG detector takes 20-100 ms and missed 3 of the 600
faces-dev photos. The appliance has its own BlazeFace detector, tuned for the gate's
frames (capture zone, reused canvas); the service cannot import it and needs less, so
this is a small decoder of its own over the same pinned model file (its copy verified by
the service's manifest): the whole image letterboxed into 192 px, MediaPipe's anchor
layout, weighted non-maximum suppression, boxes back in image pixels. The resampling
(exact 2:1 bilinear halvings, then bilinear) is the appliance detector's: the box
geometry the alignment relies on was measured with it, and INTER_AREA instead cost
0.5 points of FNMR at FMR 1e-3 on faces-dev.

A face that fills most of the image (a gate's close crop, about 2.2 face widths wide) is
at the top of the full-range model's size range and is often missed when it is also
small, noisy or dim: on the 90 captures of ``gatectl bench capture`` on faces-dev scenes
(seed 23) the service found no face in 32. When nothing is found, the finder looks again
with the image at half the model's input, centred on black (``SECOND_LOOK_FILL``): 29 of
those 32 were then found. An image in which the first look finds a face is treated
exactly as before (same box, same template), so enrolled templates and the shipped
calibrations stay valid.

Not thread-safe by design: one finder per recognizer, and one recognizer per worker.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gate_contract.onnx import load_onnxruntime
from matching_service.errors import RecognizerUnavailable
from matching_service.recognizers import model_store

_ort = load_onnxruntime()

INPUT = 192
STRIDE = 4  # the full-range model: one anchor per cell of a 48 x 48 grid
MIN_SCORE = 0.5
NMS_IOU = 0.3
SECOND_LOOK_FILL = 0.5  # the image's long side, of the input, at the second look


def _anchors() -> np.ndarray:
    cells = INPUT // STRIDE
    ys, xs = np.mgrid[0:cells, 0:cells]
    return np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def session(path: Path) -> _ort.InferenceSession:
    """One single-threaded CPU session: the service scales with worker processes."""
    options = _ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return _ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise RecognizerUnavailable(f"onnxruntime could not load {path}: {exc}") from exc


class FaceFinder:
    """Face boxes (x0, y0, x1, y1) in image pixels, best first, from BlazeFace full range."""

    def __init__(self, models_dir: Path | None = None, min_score: float = MIN_SCORE) -> None:
        self._session = session(model_store.verified(model_store.BLAZEFACE_FULL, models_dir))
        self._input = self._session.get_inputs()[0].name
        outputs = {o.shape[-1]: o.name for o in self._session.get_outputs()}
        self._regressors, self._scores = outputs[16], outputs[1]
        self._anchors = _anchors().astype(np.float32)
        self._min_logit = float(np.log(min_score / (1.0 - min_score)))

    def largest(self, image_bgr: np.ndarray) -> tuple[float, float, float, float] | None:
        """The largest face's box, or None."""
        boxes = self.find(image_bgr)
        if not boxes:
            return None
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))

    def find(self, image_bgr: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Every face's box; when none is found with the image filling the model's input,
        a second look with it at half that size (see ``SECOND_LOOK_FILL``)."""
        return self._search(image_bgr, 1.0) or self._search(image_bgr, SECOND_LOOK_FILL)

    def _search(
        self, image_bgr: np.ndarray, fill: float
    ) -> list[tuple[float, float, float, float]]:
        """Boxes with the image's long side at ``fill`` of the input, centred on black."""
        height, width = image_bgr.shape[:2]
        scale = fill * INPUT / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        centred = fill < 1.0  # the first look keeps the letterbox the geometry was measured on
        left = (INPUT - new_w) // 2 if centred else 0
        top = (INPUT - new_h) // 2 if centred else 0
        canvas = np.zeros((INPUT, INPUT, 3), np.uint8)
        halved = image_bgr
        while max(halved.shape[:2]) >= 2 * max(new_w, new_h):  # exact 2:1 steps first
            smaller = cv2.resize(halved, (halved.shape[1] // 2, halved.shape[0] // 2))
            if halved is not image_bgr:
                halved.fill(0)
            halved = smaller
        cv2.resize(halved, (new_w, new_h), dst=canvas[top : top + new_h, left : left + new_w])
        if halved is not image_bgr:
            halved.fill(0)
        tensor = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        canvas.fill(0)
        tensor *= 1 / 127.5
        tensor -= 1.0
        try:
            regressors, logits = self._session.run(
                [self._regressors, self._scores], {self._input: tensor}
            )
        finally:
            tensor.fill(0)  # no pixels of the capture linger in our buffers
        logits = logits[0, :, 0]
        keep = np.flatnonzero(logits > self._min_logit)
        if keep.size == 0:
            return []
        raw = regressors[0, keep, :4] / INPUT
        centres = self._anchors[keep]
        cx, cy = raw[:, 0] + centres[:, 0], raw[:, 1] + centres[:, 1]
        half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
        boxes *= INPUT
        boxes -= (left, top, left, top)
        boxes *= 1 / scale
        scores = logits[keep]
        found = []
        order = np.argsort(-scores)
        while order.size:
            overlap = _iou(boxes[order[0]], boxes[order])
            group = order[overlap > NMS_IOU] if overlap[0] > NMS_IOU else order[:1]
            weights = 1.0 / (1.0 + np.exp(-np.clip(scores[group], -100, 100)))
            box = (boxes[group] * weights[:, None]).sum(0) / weights.sum()
            found.append(tuple(float(v) for v in box))
            rest = overlap <= NMS_IOU
            rest[0] = False
            order = order[rest]
        return found


__all__ = ["INPUT", "MIN_SCORE", "NMS_IOU", "SECOND_LOOK_FILL", "STRIDE", "FaceFinder", "session"]
