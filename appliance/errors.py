"""TODO docstring."""

from __future__ import annotations

import grpc


class ConfigError(ValueError):
    """The configuration file is missing, malformed or holds a bad value."""


class ModelError(RuntimeError):
    """A model is missing, corrupt or not the pinned one: the appliance must not start."""


class CameraError(RuntimeError):
    """A camera or replay input cannot be opened or read."""


class LedgerError(ValueError):
    """The ledger's chain is broken at a named record."""


class TornRecordError(LedgerError):
    """The newest record was cut short (power loss); ``verified`` records before it hold."""

    def __init__(self, message: str, verified: int) -> None:
        super().__init__(message)
        self.verified = verified


class EncodeError(RuntimeError):
    """The frame could not be encoded for sending."""


class MatchingUnavailable(RuntimeError):
    """The matching service could not be reached or refused the call.

    ``code`` is the gRPC status when there was one, so callers branch on it, not on text.
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class VerifyCancelled(Exception):
    """The caller cancelled a verify (opt-out, link lost, own deadline): no verdict."""


class CircuitOpen(MatchingUnavailable):
    """The circuit breaker is open: the call was not even tried."""


class EnrollmentFailed(RuntimeError):
    """Enrollment was refused or returned material that does not check out."""


class ProvisionError(RuntimeError):
    """Provisioning cannot go on; the message says what to fix."""


class StartupError(RuntimeError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
