"""TODO docstring."""

from __future__ import annotations


class VerdictRejected(ValueError):
    """A verdict that must not open the gate, with the reason why."""


class SealError(ValueError):
    """A sealed payload is malformed, tampered with, or sealed to another key or capture."""


class BoardingPassError(ValueError):
    """The text is not a valid BCBP: ``field`` failed at character ``position`` (0-based)."""

    def __init__(self, field: str, position: int, message: str) -> None:
        super().__init__(f"{field} at position {position}: {message}")
        self.field = field
        self.position = position
        self.message = message
