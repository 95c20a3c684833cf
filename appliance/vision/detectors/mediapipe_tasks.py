"""BlazeFace through MediaPipe Tasks' ``FaceDetector`` (a third, optional runtime).

Set-up adds the TFLite metadata Tasks requires to the pinned npm models; this backend
loads that prepared file after checking its hash, runs it on the capture zone and
returns the same ``Face`` objects as the onnxruntime backend. MediaPipe is an optional
dependency, imported here only.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from pathlib import Path

import numpy as np

from appliance.errors import ModelError
from appliance.vision.detectors.base import Face, ViewSearch
from appliance.vision.models import verified_model
from appliance.vision.tone import apply_gamma


class MediapipeFaceDetector(ViewSearch):
    def __init__(
        self,
        variant: str = "full",
        *,
        models_dir: Path | None = None,
        min_score: float = 0.5,
        zone_width: float | None = None,
    ) -> None:
        model = verified_model(variant, models_dir, "mediapipe")
        os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ INFO lines
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions
        except ImportError as exc:
            raise ModelError(
                "the mediapipe runtime is not installed (make setup installs it)"
            ) from exc
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=model.content),
            min_detection_confidence=min_score,
        )
        try:
            self._detector = vision.FaceDetector.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"MediaPipe could not load {model.path}: {exc}") from exc
        # Close before the interpreter stops MediaPipe's worker pool, or its __del__ fails
        # noisily at exit: threading's exit hooks run before that pool shuts down, plain
        # atexit hooks run after it.
        register = getattr(threading, "_register_atexit", atexit.register)
        register(self.close)
        self._mp = mp
        self.variant = variant
        self.zone_width = zone_width

    def _infer(self, zone: np.ndarray, gamma: float | None = None) -> list[Face]:
        if not zone.size:
            return []
        rgb = np.ascontiguousarray(zone[:, :, ::-1])
        if gamma is not None:
            apply_gamma(rgb, gamma)
        try:
            image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
            result = self._detector.detect(image)
        finally:
            rgb.fill(0)  # our RGB copy held this frame's pixels
        height, width = zone.shape[:2]
        faces = []
        for detection in result.detections:
            box = detection.bounding_box
            points = np.array(
                [[k.x * width, k.y * height] for k in detection.keypoints], np.float32
            ).reshape(-1, 2)
            faces.append(
                Face(
                    float(detection.categories[0].score),
                    (
                        float(box.origin_x),
                        float(box.origin_y),
                        float(box.origin_x + box.width),
                        float(box.origin_y + box.height),
                    ),
                    points,
                )
            )
        faces.sort(key=lambda f: f.score, reverse=True)
        return faces

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, ValueError):
            self._detector.close()


__all__ = ["MediapipeFaceDetector"]
