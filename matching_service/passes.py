"""The passenger a boarding pass names, to confirm in pass-then-face mode.

The pass is parsed (and so validated) by the contract's IATA BCBP parser; the matching
service only needs the passenger name and the first leg's PNR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gate_contract.bcbp import parse_bcbp
from gate_contract.errors import BoardingPassError

MAX_LENGTH = 4096


@dataclass(frozen=True)
class Passenger:
    name: str  # normalised: upper case, "SURNAME/GIVEN", single spaces
    pnr: str


def normalise_name(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().upper())


def passenger_from_bcbp(text: str) -> Passenger:
    """Name and first-leg PNR of a boarding pass, validated by the full BCBP parser."""
    if len(text) > MAX_LENGTH:
        raise BoardingPassError("boarding pass", MAX_LENGTH, "too long")
    boarding_pass = parse_bcbp(text)
    name = normalise_name(boarding_pass.name)
    pnr = boarding_pass.legs[0].pnr.upper()
    if not name or not pnr:
        raise BoardingPassError("passenger name or PNR", 0, "missing")
    return Passenger(name, pnr)


__all__ = ["MAX_LENGTH", "Passenger", "normalise_name", "passenger_from_bcbp"]
