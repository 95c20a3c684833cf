"""The flight this gate boards: the one fact the workflow, the matcher session, the
boarding-pass check and the configuration share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flight:
    carrier: str  # IATA airline code, e.g. "BA"
    flight_number: str  # e.g. "0283"
    date: str  # ISO date of departure, e.g. "2026-11-25"
    departure_airport: str  # IATA airport code, e.g. "LAX"
    gate: str = ""  # e.g. "B42"

    @property
    def key(self) -> str:
        """One flight's name in records: ``BA0283/2026-11-25/LAX`` (the gate may change)."""
        return f"{self.carrier}{self.flight_number}/{self.date}/{self.departure_airport}"

    @property
    def name(self) -> str:
        """How people read it: ``BA0283 2026-11-25 LAX gate B42``."""
        gate = f" gate {self.gate}" if self.gate else ""
        return f"{self.carrier}{self.flight_number} {self.date} {self.departure_airport}{gate}"


__all__ = ["Flight"]
