"""dlib's ResNet descriptor (128-d, Euclidean): the default recognizer, with clean terms.

The model (CC0) comes with the PyPI package ``face-recognition-models``; that package's
own ``__init__`` needs ``pkg_resources``, so its ``models/`` folder is located through
the import system instead of importing it. Faces are found by dlib's HOG detector and
aligned with the 5-point predictor (the 68-point one has non-commercial data terms).

Descriptors are L2-normalised and compared by cosine. dlib's own recipe is the Euclidean
distance of raw descriptors, but their length varies with the photo, not the person:
normalised, FNMR at FMR 1e-3 on faces-dev fell from 22 % to 12.6 % with one photo per
traveller and from 6.3 % to 2.8 % with three (same encodings, same protocol).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import threading
from pathlib import Path

import cv2
import dlib
import numpy as np

from matching_service.errors import NoFaceFound, RecognizerUnavailable
from matching_service.recognizers.base import RecognizerInfo, require_colour_image
from matching_service.recognizers.probe_noise import smoothed_if_noisy

MAX_SIDE = 800  # document photos are downscaled to this before detection
NET_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def dlib_models_folder() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RecognizerUnavailable(
            "face-recognition-models is not installed (pip install '.[matcher]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@functools.cache
def dlib_info() -> RecognizerInfo:
    """dlib's identity: the template id carries the network file's hash."""
    digest = hashlib.sha256((dlib_models_folder() / NET_FILE).read_bytes()).hexdigest()
    return RecognizerInfo("dlib", f"dlib-resnet-128-unit/{digest[:12]}", 128, "cosine")


class DlibRecognizer:
    """Detects the largest face in an image and returns its 128-d descriptor."""

    def __init__(self) -> None:
        folder = dlib_models_folder()
        self.info = dlib_info()
        self._detector = dlib.get_frontal_face_detector()
        self._shapes = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(folder / NET_FILE))
        self._lock = threading.Lock()  # dlib objects are not safe to share across threads

    def encode(self, image_bgr: np.ndarray) -> np.ndarray:
        """Unit descriptor of the largest face; raises ``NoFaceFound`` when there is none."""
        require_colour_image(image_bgr)
        copies: list[np.ndarray] = []  # every copy of the pixels, zeroized however this ends
        try:
            scale = min(1.0, MAX_SIDE / max(image_bgr.shape[:2]))
            if scale < 1.0:
                image_bgr = cv2.resize(
                    image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
                )
                copies.append(image_bgr)
            rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)  # always a copy of its own
            copies.append(rgb)
            with self._lock:
                boxes = self._detector(rgb, 1 if max(rgb.shape[:2]) < 400 else 0)
                if not boxes:
                    raise NoFaceFound("no face found in the image")
                box = max(boxes, key=lambda r: r.width() * r.height())
                smoothed = smoothed_if_noisy(
                    image_bgr, (box.left(), box.top(), box.right(), box.bottom())
                )
                if smoothed is not None:
                    copies.append(smoothed)
                    rgb = cv2.cvtColor(smoothed, cv2.COLOR_BGR2RGB)
                    copies.append(rgb)
                shape = self._shapes(rgb, box)
                descriptor = np.array(self._net.compute_face_descriptor(rgb, shape), np.float32)
        finally:
            for copy in copies:
                copy.fill(0)  # the service keeps no pixels of a live capture
        norm = float(np.linalg.norm(descriptor))
        if not np.isfinite(norm) or norm == 0:
            raise NoFaceFound("the face gave a degenerate descriptor")
        return descriptor / norm


__all__ = ["MAX_SIDE", "NET_FILE", "DlibRecognizer", "dlib_info", "dlib_models_folder"]
