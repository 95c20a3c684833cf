"""BlazeFace through LiteRT (TensorFlow Lite's runtime, with its XNNPACK CPU kernels).

It runs the pinned TFLite file itself, the format the model was made for, in NHWC as it
comes; XNNPACK is the CPU path MediaPipe runs BlazeFace with on phones and on the Pi.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.errors import ModelError
from appliance.vision.detectors.blazeface import BlazeFace
from appliance.vision.models import Runtime, verified_model


def _interpreter(path: Path, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ModelError(
            "the litert runtime is not installed (pip install ai-edge-litert)"
        ) from exc
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"LiteRT could not load {path}: {exc}") from exc
    return interpreter


class LiteRTFaceDetector(BlazeFace):
    """BlazeFace on LiteRT, the TFLite file checked against its pinned SHA-256."""

    def __init__(
        self,
        variant: str = "full",
        *,
        models_dir: Path | None = None,
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        threads: int = 1,
        zone_width: float | None = None,
    ) -> None:
        path, pin = verified_model(variant, models_dir, Runtime.LITERT)
        super().__init__(variant, pin, min_score=min_score, nms_iou=nms_iou, zone_width=zone_width)
        self._interpreter = _interpreter(path, threads)
        (given,) = self._interpreter.get_input_details()
        if tuple(given["shape"]) != (1, self.size, self.size, 3):
            raise ModelError(f"{path.name} takes {tuple(given['shape'])}, not one RGB image")
        self._input = given["index"]
        outputs = {int(o["shape"][-1]): o["index"] for o in self._interpreter.get_output_details()}
        self._regressors, self._scores = outputs[16], outputs[1]
        self._rgb = np.zeros((self.size, self.size, 3), np.uint8)

    def _input_tensor(self) -> np.ndarray:
        """The interpreter's own input buffer (a view: dropped before every invoke)."""
        return self._interpreter.tensor(self._input)()

    def _run(self, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB, dst=self._rgb)
        tensor = self._input_tensor()
        np.multiply(self._rgb, np.float32(1 / 127.5), out=tensor[0])
        tensor -= np.float32(1.0)  # RGB in [-1, 1], written in place
        del tensor
        try:
            self._interpreter.invoke()
            regressors = self._interpreter.get_tensor(self._regressors)
            logits = self._interpreter.get_tensor(self._scores)
        finally:
            self._rgb.fill(0)
            self._input_tensor().fill(0)
        return regressors[0], logits[0, :, 0]


__all__ = ["LiteRTFaceDetector"]
