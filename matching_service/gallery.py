"""Flight galleries: templates of the travellers booked on each flight, in SQLite.

A gallery is built once from a manifest of document photos and kept as templates only;
the photos themselves are never stored. The manifest is JSON (a list of objects) or
CSV (a header row), with fields ``traveller_id``, ``category`` (``us_citizen``,
``in_scope``, ``exempt``...), ``photo`` (relative to the manifest) and, optionally,
``pnr`` and ``name`` (as on the boarding pass, ``SURNAME/GIVEN``) for pass-then-face.

Matching is 1:N by Euclidean distance between dlib descriptors within one flight's
gallery. Retention follows the published CBP TVS rules (see ``apply_retention``); every
deletion is recorded in ``retention_log``.
"""

from __future__ import annotations

import csv
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from matching_service.errors import GalleryError
from matching_service.passes import Passenger, normalise_name
from matching_service.recognizer import FaceEncoder
from matching_service.store import open_db

# dlib's published operating point for its ResNet descriptor (99.38 % on LFW).
DLIB_THRESHOLD = 0.6
# Calibrated with `gate-matcher calibrate --fmr 0.001` on faces-dev (60 identities x 10
# photos, 597 templates, 175,233 impostor pairs): 0.1 % of impostor pairs fall at or
# below 0.5008 (1:1 FNMR there 22 %; dlib's own 0.6 gives a far higher FMR on this
# data). Rounded down, so the FMR is at most 0.1 %. In 1:N over a gallery of N the
# false positive identification rate grows roughly as N x FMR.
CALIBRATED_THRESHOLD = 0.50
DEFAULT_THRESHOLD = CALIBRATED_THRESHOLD

# Categories whose templates go no more than 12 h after verification (CBP: U.S. citizens
# and biometrically exempt aliens); every other category goes within 14 days.
SHORT_RETENTION = ("us_citizen", "exempt")
CATEGORIES = ("us_citizen", "exempt", "in_scope", "other")
HOUR_MS = 3_600_000
SHORT_RETENTION_MS = 12 * HOUR_MS
LONG_RETENTION_MS = 14 * 24 * HOUR_MS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS travellers (
    flight TEXT NOT NULL,
    traveller_id TEXT NOT NULL,
    category TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    template BLOB NOT NULL,
    PRIMARY KEY (flight, traveller_id)
);
CREATE TABLE IF NOT EXISTS retention_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deleted_at_ms INTEGER NOT NULL,
    flight TEXT NOT NULL,
    token TEXT NOT NULL,
    category TEXT NOT NULL,
    enrolled_at_ms INTEGER NOT NULL,
    verified_at_ms INTEGER,
    deadline_ms INTEGER NOT NULL,
    rule TEXT NOT NULL
);
"""
# Columns added after the first release; existing databases are migrated in place.
_COLUMNS = {
    "enrolled_at_ms": "INTEGER NOT NULL DEFAULT 0",
    "verified_at_ms": "INTEGER",
    "pnr": "TEXT NOT NULL DEFAULT ''",
    "name": "TEXT NOT NULL DEFAULT ''",
}


@dataclass(frozen=True)
class Match:
    token: str
    traveller_id: str
    distance: float


@dataclass(frozen=True)
class ManifestEntry:
    traveller_id: str
    category: str
    photo: Path
    pnr: str = ""
    name: str = ""


@dataclass(frozen=True)
class Deletion:
    flight: str
    token: str
    category: str
    deadline_ms: int
    rule: str


def flight_key(carrier: str, flight_number: str, date: str, departure_airport: str) -> str:
    """One flight's name in the store, e.g. ``BA0283/2026-11-25/LAX``."""
    return f"{carrier.upper()}{flight_number.zfill(4)}/{date}/{departure_airport.upper()}"


def read_manifest(manifest: Path) -> list[ManifestEntry]:
    """Entries of a JSON or CSV manifest (by suffix), photo paths resolved; strict."""
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryError(f"cannot read gallery manifest {manifest}: {exc}") from exc
    if manifest.suffix.lower() == ".csv":
        raw = list(csv.DictReader(text.splitlines()))
    else:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise GalleryError(f"cannot read gallery manifest {manifest}: {exc}") from exc
        if not isinstance(raw, list):
            raise GalleryError(f"{manifest}: expected a JSON list of travellers")
    entries, seen = [], set()
    for number, entry in enumerate(raw, 1):
        if not isinstance(entry, dict):
            raise GalleryError(f"{manifest} entry {number}: expected an object")
        try:
            traveller_id, category = str(entry["traveller_id"]), str(entry["category"])
            photo = (manifest.parent / str(entry["photo"])).resolve()
        except KeyError as exc:
            raise GalleryError(f"{manifest} entry {number}: missing field {exc}") from exc
        if not traveller_id.strip():
            raise GalleryError(f"{manifest} entry {number}: empty traveller_id")
        if traveller_id in seen:
            raise GalleryError(f"{manifest} entry {number}: duplicate traveller {traveller_id}")
        seen.add(traveller_id)
        if category not in CATEGORIES:
            raise GalleryError(f"{manifest} entry {number}: unknown category {category!r}")
        pnr = str(entry.get("pnr") or "").strip().upper()
        name = normalise_name(str(entry.get("name") or ""))
        entries.append(ManifestEntry(traveller_id, category, photo, pnr, name))
    return entries


def retention_deadline(category: str, enrolled_at_ms: int, verified_at_ms: int | None) -> int:
    """When a gallery record must be gone, by the TVS rules.

    Verified U.S. citizens (and exempt aliens): 12 h after verification. Everyone else
    verified: 14 days after verification. A record never verified (a no-show): 14 days
    after enrolment.
    """
    if verified_at_ms is None:
        return enrolled_at_ms + LONG_RETENTION_MS
    if category in SHORT_RETENTION:
        return verified_at_ms + SHORT_RETENTION_MS
    return verified_at_ms + LONG_RETENTION_MS


class Gallery:
    """Templates per flight with 1:N search; safe to call from gRPC worker threads."""

    def __init__(
        self,
        db_path: Path | str,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        import time

        self.path = db_path
        self._db = open_db(db_path)
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(travellers)")}
        for column, kind in _COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE travellers ADD COLUMN {column} {kind}")
        self._db.commit()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[list[tuple[str, str]], np.ndarray]] = {}
        self.threshold = threshold
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)

    def enroll_manifest(self, flight: str, manifest: Path, encoder: FaceEncoder) -> int:
        """Compute and store templates for every traveller in ``manifest``; returns count."""
        entries = read_manifest(manifest)
        rows = []
        now = self._clock()
        for number, entry in enumerate(entries, 1):
            image = cv2.imread(str(entry.photo))
            if image is None:
                raise GalleryError(f"{manifest} entry {number}: cannot read photo {entry.photo}")
            try:
                template = encoder.encode(image)
            finally:
                image.fill(0)
            rows.append(
                (
                    flight,
                    entry.traveller_id,
                    entry.category,
                    secrets.token_hex(16),
                    template.tobytes(),
                    now,
                    None,
                    entry.pnr,
                    entry.name,
                )
            )
        self.enroll_rows(flight, rows)
        return len(rows)

    def enroll_templates(
        self, flight: str, templates: list[tuple[ManifestEntry, np.ndarray]]
    ) -> list[str]:
        """Store already computed templates (bench, tests); returns the tokens in order."""
        now = self._clock()
        rows = [
            (
                flight,
                e.traveller_id,
                e.category,
                secrets.token_hex(16),
                np.asarray(t, np.float32).tobytes(),
                now,
                None,
                e.pnr,
                e.name,
            )
            for e, t in templates
        ]
        self.enroll_rows(flight, rows)
        return [row[3] for row in rows]

    def enroll_rows(self, flight: str, rows: list[tuple]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO travellers (flight, traveller_id, category, token,"
                " template, enrolled_at_ms, verified_at_ms, pnr, name)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._cache.pop(flight, None)

    def size(self, flight: str) -> int:
        return len(self._templates(flight)[0])

    def _templates(self, flight: str) -> tuple[list[tuple[str, str]], np.ndarray]:
        with self._lock:
            if flight not in self._cache:
                rows = self._db.execute(
                    "SELECT token, traveller_id, template FROM travellers WHERE flight = ?",
                    (flight,),
                ).fetchall()
                ids = [(token, traveller) for token, traveller, _ in rows]
                matrix = np.array(
                    [np.frombuffer(blob, np.float32) for *_, blob in rows], np.float32
                ).reshape(len(rows), 128)
                self._cache[flight] = (ids, matrix)
            return self._cache[flight]

    def nearest(self, flight: str, template: np.ndarray) -> Match | None:
        """The closest traveller on ``flight`` whatever the distance, or None if empty."""
        ids, matrix = self._templates(flight)
        if not ids:
            return None
        distances = np.linalg.norm(matrix - template[None, :], axis=1)
        best = int(np.argmin(distances))
        token, traveller_id = ids[best]
        return Match(token, traveller_id, float(distances[best]))

    def search(self, flight: str, template: np.ndarray) -> Match | None:
        """The closest traveller on ``flight`` within the threshold, or None."""
        match = self.nearest(flight, template)
        return match if match is not None and match.distance <= self.threshold else None

    def passenger_match(
        self, flight: str, template: np.ndarray, passenger: Passenger
    ) -> Match | None:
        """The closest enrolment of the pass's passenger on ``flight`` (any distance).

        Pass-then-face is a 1:1 question ("is this the pass holder?"): comparing with the
        holder's own template avoids refusing them because someone else's happens to be
        nearer in the 1:N ranking.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT token, traveller_id, pnr, name, template FROM travellers "
                "WHERE flight = ? AND pnr = ?",
                (flight, passenger.pnr),
            ).fetchall()
        best: Match | None = None
        for token, traveller_id, pnr, name, blob in rows:
            if not pnr or (name and name != passenger.name):
                continue
            distance = float(np.linalg.norm(np.frombuffer(blob, np.float32) - template))
            if best is None or distance < best.distance:
                best = Match(token, traveller_id, distance)
        return best

    def record_verification(self, flight: str, traveller_id: str, at_ms: int) -> None:
        """Start the retention clock of a traveller at their first verification."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE travellers SET verified_at_ms = ? WHERE flight = ? AND traveller_id = ?"
                " AND verified_at_ms IS NULL",
                (at_ms, flight, traveller_id),
            )

    def apply_retention(self, now_ms: int, margin_ms: int = 0) -> list[Deletion]:
        """Delete every record whose deadline is within ``margin_ms`` of ``now_ms``.

        ``margin_ms`` is the scheduler's period, so a record is gone *before* its
        deadline even if the next run comes a whole period later. Each deletion is
        written to ``retention_log`` in the same transaction.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT flight, traveller_id, token, category, enrolled_at_ms, verified_at_ms"
                " FROM travellers"
            ).fetchall()
        due = []
        for flight, traveller_id, token, category, enrolled, verified in rows:
            deadline = retention_deadline(category, enrolled, verified)
            if deadline - margin_ms <= now_ms:
                if verified is None:
                    rule = "not verified: 14 days after enrolment"
                elif category in SHORT_RETENTION:
                    rule = "12 hours after verification"
                else:
                    rule = "14 days after verification"
                due.append(
                    (flight, traveller_id, token, category, enrolled, verified, deadline, rule)
                )
        if not due:
            return []
        with self._lock, self._db:
            for flight, traveller_id, token, category, enrolled, verified, deadline, rule in due:
                self._db.execute(
                    "DELETE FROM travellers WHERE flight = ? AND traveller_id = ?",
                    (flight, traveller_id),
                )
                self._db.execute(
                    "INSERT INTO retention_log (deleted_at_ms, flight, token, category,"
                    " enrolled_at_ms, verified_at_ms, deadline_ms, rule)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (now_ms, flight, token, category, enrolled, verified, deadline, rule),
                )
                self._cache.pop(flight, None)
        return [Deletion(d[0], d[2], d[3], d[6], d[7]) for d in due]

    def retention_log(self) -> list[tuple]:
        """(deleted_at_ms, flight, token, category, deadline_ms, rule) per deletion."""
        with self._lock:
            return self._db.execute(
                "SELECT deleted_at_ms, flight, token, category, deadline_ms, rule"
                " FROM retention_log ORDER BY id"
            ).fetchall()

    def tokens(self, flight: str) -> dict[str, str]:
        """traveller_id -> token for ``flight`` (tests, bench)."""
        return {traveller: token for token, traveller in self._templates(flight)[0]}


__all__ = [
    "CALIBRATED_THRESHOLD",
    "CATEGORIES",
    "DEFAULT_THRESHOLD",
    "DLIB_THRESHOLD",
    "HOUR_MS",
    "LONG_RETENTION_MS",
    "SHORT_RETENTION",
    "SHORT_RETENTION_MS",
    "Deletion",
    "Gallery",
    "ManifestEntry",
    "Match",
    "flight_key",
    "read_manifest",
    "retention_deadline",
]
