"""TODO docstring."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlightInfo:
    carrier: str
    flight_number: str
    date: str
    departure_airport: str
    gate: str = ""
