"""TODO docstring."""

from __future__ import annotations

import grpc


class Rejected(Exception):
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


class GalleryError(ValueError):
    """A manifest or photo that cannot be enrolled, with the reason."""


class NoFaceFound(ValueError):
    """The image holds no face the recogniser can use."""


class UndecodableImage(ValueError):
    """The capture's bytes are not an image OpenCV can decode."""


class EncoderPoolError(RuntimeError):
    """The pool could not encode (closed, a worker died, or it took too long)."""


class TokenRefused(ValueError):
    """Why a token cannot be used: ``reason`` is unknown, used, expired or wrong_device."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"enrollment token {reason.replace('_', ' ')}")
        self.reason = reason


class RevocationError(ValueError):
    """The revocation list cannot be read or parsed."""


class BenchError(ValueError):
    """The dataset cannot be benchmarked (missing, too small), with the reason."""
