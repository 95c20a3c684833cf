"""IATA Bar Coded Boarding Pass (BCBP, Resolution 792), format ``M``.

Layout (widths in characters; see ../shared/REFERENCES.md, "IATA BCBP"):

* mandatory unique part (23): format code ``M``, number of legs (1-4), passenger name (20),
  electronic ticket indicator (1);
* per leg, the mandatory repeated part (37): PNR (7), from (3), to (3), operating carrier
  (3), flight number (5), Julian date of flight (3), compartment (1), seat (4), check-in
  sequence (5), passenger status (1), size of the leg's variable field (2, hex);
* the leg's variable field, of exactly that size. In the first leg it opens with ``>``,
  the version (1) and the size of the unique conditional part (2, hex) followed by that
  part; every leg then has the size of its repeated conditional part (2, hex) followed by
  that part; whatever is left of the variable field is for the airline's individual use;
* after the last leg, optionally the security section: ``^``, type (1), length (2, hex),
  data.

The sizes say how much of a conditional part is present: its fields are read in order and
the part may end after any field, or inside the last one (which is then kept as far as it
goes). Characters of a conditional part beyond the fields this parser knows (a later
version of the resolution) are skipped. Everything else is strict: any deviation raises
:class:`BoardingPassError` naming the field and its 0-based character position. No other
exception is raised for any ``str`` input.

Nothing but the parsed fields is kept: the scanned text itself is not stored.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass

from gate_contract.errors import BoardingPassError

__all__ = [
    "BAG_TAG_WIDTH",
    "FAST_TRACK_MIN_VERSION",
    "FORMAT_CODE",
    "MAX_BAG_TAGS",
    "MAX_LEGS",
    "NAME_WIDTH",
    "BoardingPass",
    "Leg",
    "SecurityData",
    "encode_bcbp",
    "normalize_flight_number",
    "normalize_sequence",
    "parse_bcbp",
    "resolve_julian_date",
]

FORMAT_CODE = "M"
MAX_LEGS = 4
NAME_WIDTH = 20
BAG_TAG_WIDTH = 13
MAX_BAG_TAGS = 3
FAST_TRACK_MIN_VERSION = 6

# (attribute, width) in order; the repeated conditional part of each leg.
_REPEATED_FIELDS: tuple[tuple[str, int], ...] = (
    ("airline_numeric_code", 3),
    ("document_serial", 10),
    ("selectee", 1),
    ("international_doc_verification", 1),
    ("marketing_carrier", 3),
    ("frequent_flyer_airline", 3),
    ("frequent_flyer_number", 16),
    ("id_ad", 1),
    ("free_baggage", 3),
    ("fast_track", 1),  # version >= 6 only
)
# The unique conditional part (first leg), before the bag tags.
_UNIQUE_FIELDS: tuple[tuple[str, int], ...] = (
    ("passenger_description", 1),
    ("source_of_check_in", 1),
    ("source_of_issuance", 1),
    ("issue_date", 4),
    ("document_type", 1),
    ("issuer", 3),
)

_AIRPORT_RE = re.compile(r"[A-Za-z]{3}")
_CARRIER_RE = re.compile(r"[A-Za-z0-9]{2,3}")
_FLIGHT_RE = re.compile(r"(\d{1,4})([A-Za-z]?) *")
_SEAT_RE = re.compile(r"(\d{1,3})([A-Z])")
_SEQUENCE_RE = re.compile(r"(\d{1,5})([A-Z]?)")
_HEX2_RE = re.compile(r"[0-9A-Fa-f]{2}")


@dataclass(frozen=True)
class SecurityData:
    type: str
    data: str


@dataclass(frozen=True)
class Leg:
    pnr: str
    from_airport: str
    to_airport: str
    carrier: str  # operating carrier
    flight_number: str  # "834", "72A": no leading zeros, suffix letter kept
    julian_day: int
    flight_date: datetime.date
    compartment: str
    seat: str  # "1A" for "001A"; other seat texts ("INF") as printed; "" if blank
    sequence: str  # check-in sequence, "25" for "0025 "; "" if blank
    status: str
    # Repeated conditional part: None when the part ends before the field.
    airline_numeric_code: str | None = None
    document_serial: str | None = None
    selectee: str | None = None
    international_doc_verification: str | None = None
    marketing_carrier: str | None = None
    frequent_flyer_airline: str | None = None
    frequent_flyer_number: str | None = None
    id_ad: str | None = None
    free_baggage: str | None = None
    fast_track: str | None = None
    airline_data: str | None = None  # for the airline's individual use, verbatim


@dataclass(frozen=True)
class BoardingPass:
    name: str  # "DESMARAIS/LUC"
    surname: str
    given_names: str
    electronic_ticket: bool
    legs: tuple[Leg, ...]
    version: int | None = None
    # Unique conditional part: None when the part ends before the field.
    passenger_description: str | None = None
    source_of_check_in: str | None = None
    source_of_issuance: str | None = None
    issue_date: str | None = None  # as printed: last digit of the year + Julian day
    document_type: str | None = None
    issuer: str | None = None
    bag_tags: tuple[str, ...] = ()
    security: SecurityData | None = None


# ------------------------------------------------------------------------ helpers


def normalize_flight_number(value: str | int) -> str:
    """``"0834"``, ``" 834 "``, ``834`` -> ``"834"``; ``"0072a"`` -> ``"72A"``."""
    m = _FLIGHT_RE.fullmatch(str(value).lstrip(" "))
    if m is None:
        raise ValueError(f"not a flight number: {value!r}")
    return f"{int(m.group(1))}{m.group(2).upper()}"


def normalize_sequence(value: str | int) -> str:
    """``"0025 "`` -> ``"25"``; a sequence in another form is only stripped and upper-cased."""
    text = str(value).strip().upper()
    m = _SEQUENCE_RE.fullmatch(text)
    return f"{int(m.group(1))}{m.group(2)}" if m else text


def _normalize_seat(text: str) -> str:
    text = text.strip()
    m = _SEAT_RE.fullmatch(text)
    return f"{int(m.group(1))}{m.group(2)}" if m else text


def _days_in_year(year: int) -> int:
    return 366 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 365


def resolve_julian_date(day: int, reference: datetime.date) -> datetime.date:
    """The date with day-of-year ``day`` nearest to ``reference``, at most a year away.

    Candidates come from the year before, of and after the reference; a day 366 exists
    only in leap years. Raises ValueError when no candidate lies within 366 days.
    """
    if not 1 <= day <= 366:
        raise ValueError(f"day of year {day} is not in 1-366")
    best: datetime.date | None = None
    for year in (reference.year - 1, reference.year, reference.year + 1):
        if day > _days_in_year(year) or not 1 <= year <= 9999:
            continue
        candidate = datetime.date(year, 1, 1) + datetime.timedelta(days=day - 1)
        distance = abs((candidate - reference).days)
        if distance > 366:
            continue
        if best is None or distance < abs((best - reference).days):
            best = candidate
    if best is None:
        raise ValueError(f"day {day} is not a date within a year of {reference.isoformat()}")
    return best


# ------------------------------------------------------------------------- parser


class _Cursor:
    """Reads fixed-width fields from ``text``; every failure is a BoardingPassError."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _check_chars(self, field: str, start: int, chunk: str) -> None:
        for i, ch in enumerate(chunk):
            if not " " <= ch <= "~":
                raise BoardingPassError(
                    field, start + i, f"character U+{ord(ch):04X} is not printable ASCII"
                )

    def take(self, field: str, width: int, limit: int | None = None) -> str:
        """Exactly ``width`` characters, which must lie before ``limit`` (default: the end)."""
        end = len(self.text) if limit is None else limit
        start = self.pos
        if start + width > end:
            if end == len(self.text):
                msg = f"text ends at {end}: {field} needs {width} characters"
            else:
                msg = f"section ends at {end}, inside {field} ({width} characters)"
            raise BoardingPassError(field, start, msg)
        chunk = self.text[start : start + width]
        self._check_chars(field, start, chunk)
        self.pos += width
        return chunk

    def take_upto(self, field: str, width: int, limit: int) -> str | None:
        """Up to ``width`` characters before ``limit``; None if none are left."""
        if self.pos >= limit:
            return None
        return self.take(field, min(width, limit - self.pos), limit)

    def hex_size(self, field: str, limit: int | None = None) -> int:
        start = self.pos
        raw = self.take(field, 2, limit)
        if not _HEX2_RE.fullmatch(raw):
            raise BoardingPassError(field, start, "not a 2-digit hexadecimal size")
        return int(raw, 16)

    def section_end(self, field: str, size: int, limit: int | None = None) -> int:
        """End of a section of ``size`` characters starting here, checked against ``limit``."""
        end = len(self.text) if limit is None else limit
        if self.pos + size > end:
            where = "the text" if limit is None else "its enclosing section"
            raise BoardingPassError(
                field,
                self.pos - 2,
                f"size {size} (0x{size:02X}) overruns {where}: {end - self.pos} characters left",
            )
        return self.pos + size


def _strip_or_none(value: str | None) -> str | None:
    return None if value is None else value.strip()


def _parse_mandatory_leg(cur: _Cursor, prefix: str, reference: datetime.date) -> dict:
    def take(name: str, width: int) -> tuple[str, int]:
        start = cur.pos
        return cur.take(f"{prefix}.{name}", width), start

    out: dict = {}
    out["pnr"] = take("pnr", 7)[0].strip()
    for name in ("from_airport", "to_airport"):
        raw, start = take(name, 3)
        if not _AIRPORT_RE.fullmatch(raw):
            raise BoardingPassError(f"{prefix}.{name}", start, "not a 3-letter code")
        out[name] = raw.upper()
    raw, start = take("carrier", 3)
    if not _CARRIER_RE.fullmatch(raw.rstrip(" ")):
        raise BoardingPassError(f"{prefix}.carrier", start, "not an airline code")
    out["carrier"] = raw.rstrip(" ").upper()
    raw, start = take("flight_number", 5)
    try:
        out["flight_number"] = normalize_flight_number(raw)
    except ValueError:
        raise BoardingPassError(
            f"{prefix}.flight_number", start, "not 1-4 digits and an optional letter"
        ) from None
    raw, start = take("julian_day", 3)
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise BoardingPassError(f"{prefix}.julian_day", start, "not a day of the year 001-366")
    out["julian_day"] = int(raw)
    try:
        out["flight_date"] = resolve_julian_date(int(raw), reference)
    except ValueError as exc:
        raise BoardingPassError(f"{prefix}.julian_day", start, str(exc)) from None
    out["compartment"] = take("compartment", 1)[0].strip()
    out["seat"] = _normalize_seat(take("seat", 4)[0])
    out["sequence"] = normalize_sequence(take("sequence", 5)[0])
    out["status"] = take("status", 1)[0].strip()
    return out


def _parse_unique_conditional(cur: _Cursor, end: int) -> dict:
    out: dict = {}
    for name, width in _UNIQUE_FIELDS:
        out[name] = _strip_or_none(cur.take_upto(name, width, end))
    tags: list[str] = []
    for i in range(MAX_BAG_TAGS):
        tag = cur.take_upto(f"bag_tags[{i}]", BAG_TAG_WIDTH, end)
        if tag is None:
            break
        tags.append(tag.strip())
    out["bag_tags"] = tuple(tags)
    if cur.pos < end:  # fields of a later version
        cur.take("unique_conditional", end - cur.pos, end)
    return out


def _parse_repeated_conditional(cur: _Cursor, prefix: str, end: int, version: int | None) -> dict:
    out: dict = {}
    for name, width in _REPEATED_FIELDS:
        if name == "fast_track" and (version is None or version < FAST_TRACK_MIN_VERSION):
            continue
        out[name] = _strip_or_none(cur.take_upto(f"{prefix}.{name}", width, end))
    if cur.pos < end:
        cur.take(f"{prefix}.repeated_conditional", end - cur.pos, end)
    return out


def parse_bcbp(text: str, *, reference_date: datetime.date | None = None) -> BoardingPass:
    """Parse a format-M BCBP. Flight dates are resolved relative to ``reference_date``
    (default: today). Raises :class:`BoardingPassError` for any invalid text."""
    if not isinstance(text, str):
        raise TypeError(f"parse_bcbp needs str, not {type(text).__name__}")
    reference = reference_date if reference_date is not None else datetime.date.today()
    cur = _Cursor(text)

    code = cur.take("format_code", 1)
    if code != FORMAT_CODE:
        raise BoardingPassError("format_code", 0, "not the format code 'M'")
    raw = cur.take("legs", 1)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LEGS:
        raise BoardingPassError("legs", 1, f"not a number of legs 1-{MAX_LEGS}")
    n_legs = int(raw)
    name = cur.take("name", NAME_WIDTH).strip()
    if not name:
        raise BoardingPassError("name", 2, "passenger name is blank")
    surname, _, given = name.partition("/")
    electronic_ticket = cur.take("electronic_ticket", 1) == "E"

    unique: dict = {}
    version: int | None = None
    legs: list[Leg] = []
    for i in range(n_legs):
        prefix = f"legs[{i}]"
        fields = _parse_mandatory_leg(cur, prefix, reference)
        size = cur.hex_size(f"{prefix}.variable_size")
        end = cur.section_end(f"{prefix}.variable_size", size)
        if i == 0 and cur.pos < end:
            start = cur.pos
            marker = cur.take("conditional_marker", 1, end)
            if marker != ">":
                raise BoardingPassError(
                    "conditional_marker", start, "no '>' where the conditional part opens"
                )
            if cur.pos < end:
                start = cur.pos
                raw = cur.take("version", 1, end)
                if not raw.isdigit():
                    raise BoardingPassError("version", start, "not a version digit")
                version = int(raw)
            if cur.pos < end:
                usize = cur.hex_size("unique_conditional_size", end)
                uend = cur.section_end("unique_conditional_size", usize, end)
                unique = _parse_unique_conditional(cur, uend)
        if cur.pos < end:
            rsize = cur.hex_size(f"{prefix}.repeated_conditional_size", end)
            rend = cur.section_end(f"{prefix}.repeated_conditional_size", rsize, end)
            fields.update(_parse_repeated_conditional(cur, prefix, rend, version))
        if cur.pos < end:
            fields["airline_data"] = cur.take(f"{prefix}.airline_data", end - cur.pos, end)
        legs.append(Leg(**fields))

    security: SecurityData | None = None
    if cur.pos < len(text):
        start = cur.pos
        if text[start] != "^":
            raise BoardingPassError(
                "trailing_data",
                start,
                f"{len(text) - start} characters after the last leg "
                "(only a '^' security section may follow)",
            )
        cur.pos += 1
        sec_type = cur.take("security_type", 1)
        length = cur.hex_size("security_length")
        end = cur.section_end("security_length", length)
        security = SecurityData(type=sec_type, data=cur.take("security_data", end - cur.pos))
        if cur.pos < len(text):
            raise BoardingPassError(
                "trailing_data",
                cur.pos,
                f"{len(text) - cur.pos} characters after the security section",
            )

    return BoardingPass(
        name=name,
        surname=surname.strip(),
        given_names=given.strip(),
        electronic_ticket=electronic_ticket,
        legs=tuple(legs),
        version=version,
        security=security,
        **unique,
    )


# ------------------------------------------------------------------------ encoder


def _fit(value: str, width: int, what: str) -> str:
    if len(value) > width or not all(" " <= ch <= "~" for ch in value):
        raise ValueError(f"{what} {value!r} does not fit {width} printable ASCII characters")
    return value.ljust(width)


def _encode_optional(values: Iterable[tuple[str, str | None, int]]) -> str:
    """Fields of a conditional part up to the last present one (None = absent)."""
    items = list(values)
    last = max((i for i, (_, v, _) in enumerate(items) if v is not None), default=-1)
    out = []
    for what, value, width in items[: last + 1]:
        if value is None:
            raise ValueError(f"{what} is absent but a later field of its part is present")
        out.append(_fit(value, width, what))
    return "".join(out)


def _sized(body: str, what: str) -> str:
    if len(body) > 0xFF:
        raise ValueError(f"{what} is {len(body)} characters, more than 255")
    return f"{len(body):02X}{body}"


def encode_bcbp(bp: BoardingPass) -> str:
    """The BCBP text of ``bp`` (Julian days from ``Leg.julian_day``). Raises ValueError if a
    field does not fit its width. ``parse_bcbp(encode_bcbp(bp))`` gives ``bp`` back."""
    if not 1 <= len(bp.legs) <= MAX_LEGS:
        raise ValueError(f"{len(bp.legs)} legs, not 1-{MAX_LEGS}")
    parts = [FORMAT_CODE, str(len(bp.legs)), _fit(bp.name, NAME_WIDTH, "name")]
    parts.append("E" if bp.electronic_ticket else " ")
    for i, leg in enumerate(bp.legs):
        flight = normalize_flight_number(leg.flight_number)
        digits = flight.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        seat_m = _SEAT_RE.fullmatch(leg.seat)
        seat = f"{int(seat_m.group(1)):03d}{seat_m.group(2)}" if seat_m else leg.seat
        seq_m = _SEQUENCE_RE.fullmatch(leg.sequence)
        seq = f"{int(seq_m.group(1)):04d}{seq_m.group(2)}" if seq_m else leg.sequence
        parts += [
            _fit(leg.pnr, 7, "pnr"),
            _fit(leg.from_airport, 3, "from_airport"),
            _fit(leg.to_airport, 3, "to_airport"),
            _fit(leg.carrier, 3, "carrier"),
            _fit(f"{int(digits):04d}{flight[len(digits) :]}", 5, "flight_number"),
            f"{leg.julian_day:03d}",
            _fit(leg.compartment, 1, "compartment"),
            _fit(seat, 4, "seat"),
            _fit(seq, 5, "sequence"),
            _fit(leg.status, 1, "status"),
        ]
        repeated_fields = [
            (name, getattr(leg, name), width)
            for name, width in _REPEATED_FIELDS
            if name != "fast_track"
            or (bp.version is not None and bp.version >= FAST_TRACK_MIN_VERSION)
        ]
        repeated = _encode_optional(repeated_fields)
        airline = leg.airline_data or ""
        variable = ""
        if i == 0:
            unique = _encode_optional(
                [(name, getattr(bp, name), width) for name, width in _UNIQUE_FIELDS]
                + [(f"bag_tags[{j}]", tag, BAG_TAG_WIDTH) for j, tag in enumerate(bp.bag_tags)]
            )
            if len(bp.bag_tags) > MAX_BAG_TAGS:
                raise ValueError(f"{len(bp.bag_tags)} bag tag fields, at most {MAX_BAG_TAGS}")
            if bp.version is not None:
                variable = f">{bp.version}"
                if unique or repeated or airline:
                    variable += _sized(unique, "unique conditional part")
            elif unique or repeated or airline:
                raise ValueError("conditional data in the first leg needs a version")
        if repeated or airline:
            variable += _sized(repeated, f"legs[{i}] repeated conditional part")
        variable += airline
        parts.append(_sized(variable, f"legs[{i}] variable field"))
    if bp.security is not None:
        parts += ["^", _fit(bp.security.type, 1, "security type")]
        parts.append(_sized(bp.security.data, "security data"))
    return "".join(parts)


# ------------------------------------------------------------- check at the gate
