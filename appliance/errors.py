"""Every exception the appliance raises, under one root.

::

    ApplianceError
    ├── StartupError             the service cannot start (exit code 1)
    │   ├── ConfigError          the configuration is missing or wrong (2)
    │   ├── ModelError           a face model is missing, corrupt or unpinned (3)
    │   ├── GateMcuError         the gate MCU's serial link cannot be opened or greeted (4)
    │   ├── MatcherSetupError    the device's matcher credentials cannot be loaded (5)
    │   ├── CameraError          a camera cannot be opened or read (6)
    │   ├── ScannerError         the barcode scanner cannot be opened, or failed (7)
    │   └── ScreensError         the screens' web server cannot be served as configured (8)
    ├── LedgerError              the purge ledger's chain is broken at a named record
    │   └── TornRecordError      ... only its newest record was cut short (power loss)
    ├── EncodeError              a chosen frame could not be encoded for sending
    ├── MatchingError            the matching service did not answer with a usable verdict
    │   ├── MatchingUnavailable  unreachable, timed out, or refused (``failure`` says which)
    │   │   └── CircuitOpen      not even tried: the circuit breaker is open
    │   ├── VerifyCancelled      the gate cancelled a verify (opt-out, link lost, deadline)
    │   └── EnrollmentFailed     enrollment refused, or its answer does not check out
    ├── ProvisionError           provisioning cannot go on; the message says what to fix
    └── FirmwareDeployError      the gate firmware could not be put on, or checked on, a board

Start-up errors carry the process exit code as a class attribute (``exit_code``), so
``gatectl run`` exits with the code of whatever stopped it and systemd's logs tell a bad
configuration (2) from a missing camera (6). Verdicts that must not open the gate are
``gate_contract.errors.VerdictRejected``; a shutdown signal is
``appliance.shutdown.ShutdownRequested`` (a ``BaseException``, not an error).
"""

from __future__ import annotations

import enum


class ApplianceError(Exception):
    """Root of the appliance's exceptions."""


class StartupError(ApplianceError):
    """The service cannot start; ``exit_code`` is what ``gatectl run`` exits with."""

    exit_code = 1


class ConfigError(StartupError):
    """The configuration file is missing, malformed or holds a bad value."""

    exit_code = 2


class ModelError(StartupError):
    """A model is missing, corrupt or not the pinned one: the appliance must not start."""

    exit_code = 3


class GateMcuError(StartupError):
    """The gate MCU's serial port cannot be opened, or the MCU does not answer."""

    exit_code = 4


class MatcherSetupError(StartupError):
    """The device's credentials for the matching service cannot be loaded."""

    exit_code = 5


class CameraError(StartupError):
    """A camera or replay input cannot be opened or read."""

    exit_code = 6


class ScannerError(StartupError):
    """The barcode scanner cannot be opened, or its port failed while serving."""

    exit_code = 7


class ScreensError(StartupError):
    """The screens cannot be served: address in use, no HTTPS beyond loopback, bad certificate."""

    exit_code = 8


class InstanceLocked(StartupError):
    """Another gate service already serves this unit (its lock names its pid and port)."""

    exit_code = 9


class LedgerError(ApplianceError):
    """The ledger's chain is broken at a named record."""


class TornRecordError(LedgerError):
    """The newest record was cut short (power loss); ``verified`` records before it hold."""

    def __init__(self, message: str, verified: int) -> None:
        super().__init__(message)
        self.verified = verified


class EncodeError(ApplianceError):
    """The frame could not be encoded for sending."""


class MatchingError(ApplianceError):
    """The matching service gave no verdict the gate may act on."""


class MatchingFailure(enum.Enum):
    """Why a call to the matching service failed, as the gate needs to tell."""

    UNREACHABLE = "unreachable"  # no connection, or the service is not serving
    TIMED_OUT = "timed_out"  # no answer within the call's deadline
    OVERLOADED = "overloaded"  # the service refused for load (resource exhausted)
    UNKNOWN_SESSION = "unknown_session"  # the service forgot the session (restarted)
    CLOCK_OFF = "clock_off"  # the capture time is outside the service's window
    REFUSED = "refused"  # the service refused this device or request
    FAILED = "failed"  # the service failed internally


class MatchingUnavailable(MatchingError):
    """The matching service could not be reached, did not answer in time, or refused.

    ``failure`` says which, for the gate to act on; ``status`` is the wire status name
    (e.g. ``UNAVAILABLE``) for the logs.
    """

    def __init__(
        self, message: str, failure: MatchingFailure = MatchingFailure.FAILED, status: str = ""
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.status = status


class CircuitOpen(MatchingUnavailable):
    """The circuit breaker is open: the call was not even tried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, MatchingFailure.UNREACHABLE)


class VerifyCancelled(MatchingError):
    """The caller cancelled a verify (opt-out, link lost, own deadline): no verdict."""


class EnrollmentFailed(MatchingError):
    """Enrollment was refused or returned material that does not check out."""


class ProvisionError(ApplianceError):
    """Provisioning cannot go on; the message says what to fix."""


__all__ = [
    "ApplianceError",
    "CameraError",
    "CircuitOpen",
    "ConfigError",
    "EncodeError",
    "EnrollmentFailed",
    "FirmwareDeployError",
    "GateMcuError",
    "InstanceLocked",
    "LedgerError",
    "MatcherSetupError",
    "MatchingError",
    "MatchingFailure",
    "MatchingUnavailable",
    "ModelError",
    "ProvisionError",
    "ScannerError",
    "ScreensError",
    "StartupError",
    "TornRecordError",
    "VerifyCancelled",
]


class FirmwareDeployError(ApplianceError):
    """The gate firmware could not be built, copied to the board, or the board did not
    answer the protocol afterwards; the message says which and what to try."""
