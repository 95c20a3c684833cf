"""Exceptions of the reference matching service.

::

    MatcherError
    ├── Rejected             a refused call: the gRPC status and audit event it leaves
    ├── GalleryError         a manifest or photo that cannot be enrolled
    ├── NoFaceFound          an image without a face the recogniser can use
    ├── RecognizerUnavailable  a recognizer whose model is missing, altered or unknown
    ├── TemplateMismatch     templates made by another recognizer than the one serving
    ├── UndecodableImage     bytes that are not an image
    ├── EncoderPoolError     the encoder processes could not encode
    ├── CallerGone           the caller left before the match (opt-out, deadline)
    ├── TokenRefused         an enrollment token that is unknown, used, expired or not this device's
    ├── RevocationError      an unreadable revocation list
    └── BenchError           a dataset a bench cannot use
"""

from __future__ import annotations

import grpc


class MatcherError(Exception):
    """Root of the matching service's exceptions."""


class Rejected(MatcherError):
    """A refused call: the status the caller gets and the audit event it leaves."""

    def __init__(
        self,
        code: grpc.StatusCode,
        event: str,
        message: str,
        *,
        device_id: str = "",
        capture_id: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.event = event
        self.message = message
        self.device_id = device_id
        self.capture_id = capture_id


class GalleryError(MatcherError):
    """A manifest or photo that cannot be enrolled, with the reason."""


class NoFaceFound(MatcherError):
    """The image holds no face the recogniser can use."""


class RecognizerUnavailable(MatcherError):
    """A recognizer cannot be used: unknown name, model not set up, or model altered."""


class TemplateMismatch(MatcherError):
    """The gallery holds templates of another recognizer: re-enrol, or serve with that one."""


class UndecodableImage(MatcherError):
    """The capture's bytes are not an image OpenCV can decode."""


class EncoderPoolError(MatcherError):
    """The pool could not encode (closed, a worker died, or it took too long)."""


class CallerGone(MatcherError):
    """The caller cancelled while its capture was encoded: no decision is made."""


class TokenRefused(MatcherError):
    """Why a token cannot be used: ``reason`` is unknown, used, expired or wrong_device."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"enrollment token {reason.replace('_', ' ')}")
        self.reason = reason


class RevocationError(MatcherError):
    """The revocation list cannot be read or parsed."""


class BenchError(MatcherError):
    """The dataset cannot be benchmarked (missing, too small), with the reason."""


__all__ = [
    "BenchError",
    "CallerGone",
    "EncoderPoolError",
    "GalleryError",
    "MatcherError",
    "NoFaceFound",
    "RecognizerUnavailable",
    "Rejected",
    "RevocationError",
    "TemplateMismatch",
    "TokenRefused",
    "UndecodableImage",
]
