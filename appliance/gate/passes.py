"""Checks a parsed boarding pass against the flight this gate boards."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field

from gate_contract.bcbp import BoardingPass, Leg, normalize_flight_number, normalize_sequence


class PassOutcome(enum.StrEnum):
    OK = "ok"
    WRONG_FLIGHT = "wrong_flight"
    WRONG_DATE = "wrong_date"
    WRONG_AIRPORT = "wrong_airport"
    ALREADY_BOARDED = "already_boarded"
    NOT_CHECKED_IN = "not_checked_in"  # no check-in sequence: cannot be boarded or deduplicated


@dataclass(frozen=True)
class PassCheck:
    outcome: PassOutcome
    reason: str
    leg: Leg | None = None
    leg_index: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is PassOutcome.OK


@dataclass(frozen=True)
class _Flight:
    carrier: str
    number: str
    date: datetime.date
    airport: str
    boarded: frozenset[str] = field(default_factory=frozenset)


def _leg_text(leg: Leg) -> str:
    return f"{leg.carrier} {leg.flight_number} {leg.from_airport}-{leg.to_airport}"


def check_against_flight(
    bp: BoardingPass,
    *,
    carrier: str,
    flight_number: str | int,
    date: datetime.date,
    departure_airport: str,
    boarded_sequences: set[str],
) -> PassCheck:
    """Check a pass against the flight boarding at this gate.

    The leg departing from ``departure_airport`` is the one checked (of several, the one
    for this flight and date first). Checks in order: airport, flight (operating carrier
    and number), date (the leg's day of the year against ``date``), check-in sequence
    present, sequence not in ``boarded_sequences`` (compared normalised, "0025" == "25").
    """
    flight = _Flight(
        carrier=carrier.strip().upper(),
        number=normalize_flight_number(flight_number),
        date=date,
        airport=departure_airport.strip().upper(),
        boarded=frozenset(normalize_sequence(s) for s in boarded_sequences),
    )
    gate_text = f"{flight.carrier} {flight.number} from {flight.airport} on {date.isoformat()}"
    day = date.timetuple().tm_yday
    here = [(i, leg) for i, leg in enumerate(bp.legs) if leg.from_airport == flight.airport]
    if not here:
        legs = ", ".join(_leg_text(leg) for leg in bp.legs)
        return PassCheck(
            PassOutcome.WRONG_AIRPORT,
            f"no leg of this pass departs from {flight.airport} ({legs}); gate boards {gate_text}",
        )

    def same_flight(leg: Leg) -> bool:
        return leg.carrier == flight.carrier and leg.flight_number == flight.number

    index, leg = next(
        ((i, lg) for i, lg in here if same_flight(lg) and lg.julian_day == day),
        next(((i, lg) for i, lg in here if same_flight(lg)), here[0]),
    )
    if not same_flight(leg):
        return PassCheck(
            PassOutcome.WRONG_FLIGHT,
            f"pass is for {_leg_text(leg)}; gate boards {gate_text}",
            leg,
            index,
        )
    if leg.julian_day != day:
        return PassCheck(
            PassOutcome.WRONG_DATE,
            f"pass is for {leg.flight_date.isoformat()} (day {leg.julian_day:03d}); "
            f"gate boards {gate_text} (day {day:03d})",
            leg,
            index,
        )
    if not leg.sequence:
        return PassCheck(
            PassOutcome.NOT_CHECKED_IN,
            f"pass for {_leg_text(leg)} has no check-in sequence number",
            leg,
            index,
        )
    if leg.sequence in flight.boarded:
        return PassCheck(
            PassOutcome.ALREADY_BOARDED,
            f"check-in sequence {leg.sequence} has already boarded {gate_text}",
            leg,
            index,
        )
    return PassCheck(
        PassOutcome.OK,
        f"{_leg_text(leg)} on {date.isoformat()}, seat {leg.seat or '-'}, sequence {leg.sequence}",
        leg,
        index,
    )


__all__ = ["PassCheck", "PassOutcome", "check_against_flight"]
