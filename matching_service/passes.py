"""Just enough of an IATA BCBP (Resolution 792, format M) to confirm a passenger.

Pass-then-face needs the passenger name (20 characters from offset 2) and the first
leg's PNR (7 characters from offset 23) of the boarding pass the agent scanned; the
rest of the barcode is not the matching service's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_LENGTH = 60  # mandatory unique (23) + first leg's mandatory part (37)
MAX_LENGTH = 4096


class BoardingPassError(ValueError):
    """The boarding pass text is not a readable BCBP."""


@dataclass(frozen=True)
class Passenger:
    name: str  # normalised: upper case, "SURNAME/GIVEN", single spaces
    pnr: str


def normalise_name(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().upper())


def passenger_from_bcbp(text: str) -> Passenger:
    if len(text) > MAX_LENGTH:
        raise BoardingPassError("boarding pass too long")
    if len(text) < MIN_LENGTH:
        raise BoardingPassError(f"boarding pass too short ({len(text)} characters)")
    if text[0] != "M" or not text[1].isdigit() or text[1] == "0":
        raise BoardingPassError("not a format M boarding pass")
    if not text.isprintable() or not text.isascii():
        raise BoardingPassError("boarding pass holds non-printable characters")
    name = normalise_name(text[2:22])
    pnr = text[23:30].strip().upper()
    if not name or not pnr:
        raise BoardingPassError("boarding pass without passenger name or PNR")
    return Passenger(name, pnr)


def make_bcbp(
    name: str,
    pnr: str,
    *,
    origin: str = "LAX",
    destination: str = "LHR",
    carrier: str = "BA",
    flight: str = "0283",
    julian_day: int = 329,
    seat: str = "012A",
) -> str:
    """A minimal one-leg format M barcode (tests, bench, demo)."""
    return (
        f"M1{name[:20]:<20}E{pnr[:7]:<7}{origin:<3}{destination:<3}{carrier:<3}"
        f"{flight:<5}{julian_day:03d}Y{seat:<4}0001 100"
    )
