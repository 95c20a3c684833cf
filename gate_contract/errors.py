"""Exceptions of the shared contract.

::

    ContractError
    ├── VerdictRejected      a verdict that must not open the gate (forged, stale, another capture)
    ├── SealError            a sealed payload that is malformed, tampered or for another key
    └── BoardingPassError    text that is not a valid IATA BCBP (field and position named)
"""

from __future__ import annotations


class ContractError(Exception):
    """Root of the contract's exceptions."""


class VerdictRejected(ContractError):
    """A verdict that must not open the gate, with the reason why."""


class SealError(ContractError):
    """A sealed payload is malformed, tampered with, or sealed to another key or capture."""


class BoardingPassError(ContractError, ValueError):
    """The text is not a valid BCBP: ``field`` failed at character ``position`` (0-based)."""

    def __init__(self, field: str, position: int, message: str) -> None:
        super().__init__(f"{field} at position {position}: {message}")
        self.field = field
        self.position = position
        self.message = message


__all__ = ["BoardingPassError", "ContractError", "SealError", "VerdictRejected"]
