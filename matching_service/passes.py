"""The passenger a boarding pass names, to confirm in pass-then-face mode.

The pass is parsed (and so validated) by the appliance's IATA BCBP parser; the matching
service only needs the passenger name and the first leg's PNR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance import boarding_pass as bcbp
from appliance.boarding_pass import parse_bcbp

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
    """Name and first-leg PNR of a boarding pass, validated by the full BCBP parser."""
    if len(text) > MAX_LENGTH:
        raise BoardingPassError("boarding pass too long")
    try:
        boarding_pass = parse_bcbp(text)
    except bcbp.BoardingPassError as exc:
        raise BoardingPassError(f"unreadable boarding pass: {exc}") from exc
    name = normalise_name(boarding_pass.name)
    pnr = boarding_pass.legs[0].pnr.upper()
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
