"""Face detection: one interface (``base``), one module per runtime, picked by name.

``base`` holds what every runtime returns (:class:`Face`) and the capture zone helpers;
``blazeface`` the model's input and output whatever runs it: ``litert_runtime`` through
LiteRT (the default), ``onnx_runtime`` through onnxruntime; ``mediapipe_tasks`` runs
it through MediaPipe Tasks (an optional dependency); ``tracking`` follows a face with the
short-range model on a region once the full-range model has found it; ``skin`` tells a
face from a colourful thing of a face's shape.
:func:`create_detector` loads only the runtime asked for.
"""

from __future__ import annotations

from pathlib import Path

from appliance.errors import ModelError
from appliance.vision.detectors.base import DEFAULT_MIN_SCORE, DEFAULT_ZONE_WIDTH, Detector, Face
from appliance.vision.models import DEFAULT_RUNTIME, Runtime

# The short-range model on a region around a face the full-range model found: it
# only has to confirm that face where it is expected (a lower bar than finding one).
TRACK_MIN_SCORE = 0.5
# With tracking, the zone model also reports faces down to this score as "possibly
# someone else": never followed, but a companion or a nearer person stops a capture.
POSSIBLE_FACE_SCORE = 0.4
# With tracking and exposure correction, one search for a traveller in three looks
# through this tone curve (a face in shadow before a bright window).
SHADOW_GAMMA = 0.6


def _runtime_detector(runtime: str, variant: str, **options) -> Detector:
    if runtime == Runtime.ONNXRUNTIME:
        from appliance.vision.detectors.onnx_runtime import OnnxFaceDetector

        return OnnxFaceDetector(variant, **options)
    if runtime == Runtime.LITERT:
        from appliance.vision.detectors.litert_runtime import LiteRTFaceDetector

        return LiteRTFaceDetector(variant, **options)
    if runtime == Runtime.MEDIAPIPE:
        from appliance.vision.detectors.mediapipe_tasks import MediapipeFaceDetector

        return MediapipeFaceDetector(variant, **options)
    known = " or ".join(r.value for r in Runtime)
    raise ModelError(f"unknown detector runtime {runtime!r}; choose {known}")


def create_detector(
    runtime: str = DEFAULT_RUNTIME,
    variant: str = "full",
    *,
    zone_width: float | None = DEFAULT_ZONE_WIDTH,
    min_score: float = DEFAULT_MIN_SCORE,
    models_dir: Path | None = None,
    tracking: bool = False,
    exposure_correction: bool = False,
) -> Detector:
    """The detector the gate runs, by runtime name; raises ``ModelError`` if unusable.

    ``tracking``: ``variant`` searches the zone and the short-range model follows the face
    (``appliance.vision.detectors.tracking``); with ``exposure_correction`` it also looks
    for faces in shadow, through a tone curve (``appliance.vision.tone``).
    """
    zone = _runtime_detector(
        runtime,
        variant,
        models_dir=models_dir,
        min_score=min(min_score, POSSIBLE_FACE_SCORE) if tracking else min_score,
        zone_width=zone_width,
    )
    if not tracking:
        return zone
    from appliance.vision.detectors.tracking import TrackingDetector

    follow = _runtime_detector(
        runtime,
        "short",
        models_dir=models_dir,
        min_score=TRACK_MIN_SCORE,
        zone_width=None,
    )
    return TrackingDetector(
        zone,
        follow,
        zone_width=zone_width,
        min_score=min_score,
        shadow_gamma=SHADOW_GAMMA if exposure_correction else None,
    )


__all__ = [
    "DEFAULT_MIN_SCORE",
    "DEFAULT_RUNTIME",
    "DEFAULT_ZONE_WIDTH",
    "POSSIBLE_FACE_SCORE",
    "SHADOW_GAMMA",
    "TRACK_MIN_SCORE",
    "Detector",
    "Face",
    "ModelError",
    "Path",
    "Runtime",
    "create_detector",
]
