"""Face detection: one interface (``base``), one module per runtime, picked by name.

``base`` holds what every runtime returns (:class:`Face`) and the capture zone helpers;
``onnx_runtime`` runs BlazeFace through onnxruntime (the default), ``mediapipe_tasks``
through MediaPipe Tasks (an optional dependency). :func:`create_detector` loads only the
runtime asked for.
"""

from __future__ import annotations

from pathlib import Path

from appliance.errors import ModelError
from appliance.vision.detectors.base import DEFAULT_MIN_SCORE, DEFAULT_ZONE_WIDTH, Detector, Face
from appliance.vision.models import Runtime


def create_detector(
    runtime: str = Runtime.ONNXRUNTIME,
    variant: str = "full",
    *,
    zone_width: float | None = DEFAULT_ZONE_WIDTH,
    min_score: float = DEFAULT_MIN_SCORE,
    models_dir: Path | None = None,
) -> Detector:
    """The detector the gate runs, by runtime name; raises ``ModelError`` if unusable."""
    if runtime == Runtime.ONNXRUNTIME:
        from appliance.vision.detectors.onnx_runtime import FaceDetector

        return FaceDetector(
            variant, models_dir=models_dir, min_score=min_score, zone_width=zone_width
        )
    if runtime == Runtime.MEDIAPIPE:
        from appliance.vision.detectors.mediapipe_tasks import MediapipeFaceDetector

        return MediapipeFaceDetector(
            variant, models_dir=models_dir, min_score=min_score, zone_width=zone_width
        )
    known = " or ".join(r.value for r in Runtime)
    raise ModelError(f"unknown detector runtime {runtime!r}; choose {known}")


__all__ = [
    "DEFAULT_MIN_SCORE",
    "DEFAULT_ZONE_WIDTH",
    "Detector",
    "Face",
    "ModelError",
    "Path",
    "Runtime",
    "create_detector",
]
