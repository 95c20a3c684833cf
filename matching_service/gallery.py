"""Flight galleries: templates of the travellers booked on each flight, in SQLite.

A gallery is built from a manifest of document photos and kept as templates only; the
photos themselves are never stored. The manifest is JSON (a list of objects) or CSV (a
header row), with fields ``traveller_id``, ``category`` (``us_citizen``, ``in_scope``,
``exempt``...), ``photos`` (a list in JSON; in CSV, paths separated by ``;``) or a single
``photo`` (relative to the manifest) and, optionally, ``pnr`` and ``name`` (as on the
boarding pass, ``SURNAME/GIVEN``) for pass-then-face. Real galleries hold several photos
per traveller (passport, visa, earlier encounters); they are fused into one template
(the mean, see ``RecognizerInfo.fuse``), which more than halves dlib's FNMR on faces-dev.

Every template is stored with its recognizer's ``template_id`` and its photo count. A
``Gallery`` is a view for one recognizer: it never compares templates of another, and
enrolling a flight with a new recognizer replaces the flight's old templates (re-enrolment
from the document photos). Thresholds come from ``thresholds.ThresholdTable``: a
calibration saved in this database, else the shipped defaults.

Retention follows the published CBP TVS rules (see ``apply_retention``); every deletion is
recorded in ``retention_log``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gate_contract.documents import parse_json
from gate_contract.progress import SILENT, Progress
from matching_service.errors import GalleryError, NoFaceFound, TemplateMismatch
from matching_service.passes import Passenger, normalise_name
from matching_service.recognizers import (
    DEFAULT_RECOGNIZER,
    Recognizer,
    RecognizerInfo,
    recognizer_info,
)
from matching_service.store import open_db
from matching_service.thresholds import OperatingPoints, ThresholdTable, load_defaults

log = logging.getLogger("gate.matcher.gallery")

MAX_PHOTOS_PER_TRAVELLER = 16

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
CREATE TABLE IF NOT EXISTS calibrations (
    template_id TEXT NOT NULL,
    photos INTEGER NOT NULL,
    points TEXT NOT NULL,
    PRIMARY KEY (template_id, photos)
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
    # Rows from before recognizer ids were recorded have '' and are never compared.
    "recognizer": "TEXT NOT NULL DEFAULT ''",
    "photos": "INTEGER NOT NULL DEFAULT 1",
}


@dataclass(frozen=True)
class Match:
    token: str
    traveller_id: str
    distance: float
    photos: int = 1  # document photos fused into the matched template


@dataclass(frozen=True)
class ManifestEntry:
    traveller_id: str
    category: str
    photos: tuple[Path, ...]
    pnr: str = ""
    name: str = ""


@dataclass
class EnrollmentReport:
    """What an enrolment did: travellers and photos used, photos skipped, rows replaced."""

    travellers: int = 0
    photos: int = 0
    skipped: list[str] = field(default_factory=list)  # "traveller: photo: reason"
    replaced: int = 0  # templates of another recognizer removed from the flight


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


def read_manifest(manifest: Path, photos_root: Path | None = None) -> list[ManifestEntry]:
    """Entries of a JSON or CSV manifest (by suffix), photo paths resolved; strict.

    Photo paths are read relative to the manifest's folder and must stay inside
    ``photos_root`` (default: that folder): a manifest cannot make the service read any
    other file it can reach.
    """
    root = Path(os.path.abspath(photos_root or manifest.parent))
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryError(f"cannot read gallery manifest {manifest}: {exc}") from exc
    if manifest.suffix.lower() == ".csv":
        raw = list(csv.DictReader(text.splitlines()))
    else:
        try:
            raw = parse_json(text)
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
        except KeyError as exc:
            raise GalleryError(f"{manifest} entry {number}: missing field {exc}") from exc
        photos = _photo_paths(manifest, number, entry, root)
        if not traveller_id.strip():
            raise GalleryError(f"{manifest} entry {number}: empty traveller_id")
        if traveller_id in seen:
            raise GalleryError(f"{manifest} entry {number}: duplicate traveller {traveller_id}")
        seen.add(traveller_id)
        if category not in CATEGORIES:
            raise GalleryError(f"{manifest} entry {number}: unknown category {category!r}")
        pnr = str(entry.get("pnr") or "").strip().upper()
        name = normalise_name(str(entry.get("name") or ""))
        entries.append(ManifestEntry(traveller_id, category, photos, pnr, name))
    return entries


def _photo_paths(manifest: Path, number: int, entry: dict, root: Path) -> tuple[Path, ...]:
    """An entry's document photos: ``photos`` (list, or ``;``-separated) or ``photo``."""
    where = f"{manifest} entry {number}"
    given = entry.get("photos")
    if given is None or given == "":
        given = entry.get("photo")
        if given is None or given == "":
            raise GalleryError(f"{where}: missing field 'photos' (or 'photo')")
        given = [given]
    elif isinstance(given, str):
        given = [part for part in given.split(";") if part.strip()]
    if not isinstance(given, list) or not given or not all(isinstance(p, str) for p in given):
        raise GalleryError(f"{where}: 'photos' must be a non-empty list of paths")
    if len(given) > MAX_PHOTOS_PER_TRAVELLER:
        raise GalleryError(f"{where}: more than {MAX_PHOTOS_PER_TRAVELLER} photos")
    # ".." and absolute paths are judged as written (symlinks the operator placed in the
    # folder are theirs to place); the photo's path must lie under the root.
    paths = tuple(Path(os.path.abspath(manifest.parent / p.strip())) for p in given)
    outside = [p for p in paths if not p.is_relative_to(root)]
    if outside:
        raise GalleryError(f"{where}: photo {outside[0]} is outside the photos folder {root}")
    if len(set(paths)) != len(paths):
        raise GalleryError(f"{where}: the same photo is listed twice")
    return paths


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
    """One recognizer's view of the templates per flight, with 1:N and 1:1 search.

    Safe to call from gRPC worker threads. ``recognizer`` (default: dlib's) decides which
    templates are visible: those it made. Templates of another recognizer are never
    compared; ``foreign_flights`` lists them so a service can refuse to start on them.
    """

    def __init__(
        self,
        db_path: Path | str,
        recognizer: RecognizerInfo | None = None,
        *,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        import time

        self.path = db_path
        self.recognizer = recognizer or recognizer_info(DEFAULT_RECOGNIZER)
        self._db = open_db(db_path)
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(travellers)")}
        for column, kind in _COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE travellers ADD COLUMN {column} {kind}")
        self._db.commit()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[list[tuple[str, str]], np.ndarray, np.ndarray]] = {}
        # Another process (`gate-matcher enroll` while `serve` runs) changed the file when
        # SQLite's data_version moves: the cached templates are read again.
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.thresholds = self._load_thresholds()

    # --- thresholds -----------------------------------------------------------------

    def _load_thresholds(self) -> ThresholdTable:
        """Shipped defaults, overridden by calibrations saved in this database."""
        with self._lock:
            saved = self._db.execute("SELECT points FROM calibrations").fetchall()
        merged = {(p.template_id, p.photos): p for p in load_defaults()}
        for (text,) in saved:
            p = OperatingPoints.from_json(parse_json(text))
            merged[(p.template_id, p.photos)] = p
        return ThresholdTable(list(merged.values()))

    def save_calibration(self, points: list[OperatingPoints]) -> None:
        """Store calibrations beside the templates; they replace the defaults from now on."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO calibrations (template_id, photos, points)"
                " VALUES (?, ?, ?)",
                [(p.template_id, p.photos, json.dumps(p.to_json())) for p in points],
            )
        self.thresholds = self._load_thresholds()

    def threshold_1to1(self, photos: int) -> float:
        """Distance threshold for "is this the traveller?" against a K-photo template."""
        return self.thresholds.for_template(self.recognizer.template_id, photos).one_to_one()

    def threshold_1ton(self, photos: int, gallery_size: int) -> float:
        """Distance threshold for the nearest of ``gallery_size`` templates (target FPIR)."""
        points = self.thresholds.for_template(self.recognizer.template_id, photos)
        return points.one_to_many(gallery_size)

    # --- enrolment ------------------------------------------------------------------

    def _check(self, recognizer: RecognizerInfo) -> None:
        if recognizer.template_id != self.recognizer.template_id:
            raise TemplateMismatch(
                f"this gallery view is for {self.recognizer.template_id}, "
                f"not {recognizer.template_id}"
            )

    def enroll_manifest(
        self,
        flight: str,
        manifest: Path,
        recognizer: Recognizer,
        *,
        photos_root: Path | None = None,
        progress: Progress = SILENT,
    ) -> EnrollmentReport:
        """Templates for every traveller in ``manifest``, each fused from their photos.

        A photo without a usable face is skipped and reported; a traveller left with no
        usable photo fails the enrolment (``GalleryError``), as does an unreadable photo.
        """
        self._check(recognizer.info)
        entries = read_manifest(manifest, photos_root)
        report = EnrollmentReport()
        templates = []
        with progress.bar("enrolling", total=len(entries), unit="traveller") as bar:
            for number, entry in enumerate(entries, 1):
                descriptors = []
                for photo in entry.photos:
                    image = cv2.imread(str(photo))
                    if image is None:
                        raise GalleryError(f"{manifest} entry {number}: cannot read photo {photo}")
                    try:
                        descriptors.append(recognizer.encode(image))
                    except NoFaceFound as exc:
                        report.skipped.append(f"{entry.traveller_id}: {photo.name}: {exc}")
                    finally:
                        image.fill(0)
                if not descriptors:
                    raise GalleryError(
                        f"{manifest} entry {number}: no usable face in any photo of "
                        f"{entry.traveller_id}"
                    )
                report.photos += len(descriptors)
                templates.append((entry, recognizer.info.fuse(descriptors), len(descriptors)))
                bar.update()
        report.travellers = len(templates)
        report.replaced = self._store(flight, templates)
        if report.replaced:
            log.warning(
                "flight %s: %d templates of another recognizer replaced by %s",
                flight,
                report.replaced,
                self.recognizer.template_id,
            )
        return report

    def enroll_templates(
        self, flight: str, templates: list[tuple[ManifestEntry, np.ndarray]]
    ) -> list[str]:
        """Store templates already computed by this view's recognizer (bench, tests), each
        counted as fused from its entry's photos; returns the tokens in order."""
        rows = [(e, np.asarray(t, np.float32), max(1, len(e.photos))) for e, t in templates]
        for entry, template, _ in rows:
            if template.shape != (self.recognizer.dimension,):
                raise GalleryError(
                    f"{entry.traveller_id}: template of shape {template.shape}, "
                    f"{self.recognizer.template_id} makes ({self.recognizer.dimension},)"
                )
        self._store(flight, rows)
        with self._lock:
            found = dict(
                self._db.execute(
                    "SELECT traveller_id, token FROM travellers WHERE flight = ?", (flight,)
                ).fetchall()
            )
        return [found[entry.traveller_id] for entry, _ in templates]

    def _store(self, flight: str, templates: list[tuple[ManifestEntry, np.ndarray, int]]) -> int:
        """Write the flight's templates; returns how many of another recognizer it removed."""
        now = self._clock()
        rows = [
            (
                flight,
                entry.traveller_id,
                entry.category,
                secrets.token_hex(16),
                np.asarray(template, np.float32).tobytes(),
                now,
                None,
                entry.pnr,
                entry.name,
                self.recognizer.template_id,
                photos,
            )
            for entry, template, photos in templates
        ]
        with self._lock, self._db:
            replaced = self._db.execute(
                "DELETE FROM travellers WHERE flight = ? AND recognizer != ?",
                (flight, self.recognizer.template_id),
            ).rowcount
            self._db.executemany(
                "INSERT OR REPLACE INTO travellers (flight, traveller_id, category, token,"
                " template, enrolled_at_ms, verified_at_ms, pnr, name, recognizer, photos)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._cache.pop(flight, None)
        return replaced

    def foreign_flights(self) -> dict[str, str]:
        """flight -> template id, for flights holding templates this view cannot use."""
        with self._lock:
            rows = self._db.execute(
                "SELECT flight, recognizer FROM travellers WHERE recognizer != ?"
                " GROUP BY flight, recognizer",
                (self.recognizer.template_id,),
            ).fetchall()
        return {flight: recognizer or "(no recognizer recorded)" for flight, recognizer in rows}

    # --- administration (gate-matcher gallery list / show / delete) -------------------

    def flights(self) -> list[dict]:
        """Every flight held: its travellers, by recognizer; never a template."""
        with self._lock:
            rows = self._db.execute(
                "SELECT flight, recognizer, COUNT(*), MIN(enrolled_at_ms) FROM travellers"
                " GROUP BY flight, recognizer ORDER BY flight"
            ).fetchall()
        return [
            {"flight": f, "recognizer": r or "?", "travellers": n, "enrolled_at_ms": at}
            for f, r, n, at in rows
        ]

    def travellers(self, flight: str) -> list[dict]:
        """One flight's travellers: id, category, photo count, when enrolled and last
        verified; never a template, a name or a booking reference."""
        with self._lock:
            rows = self._db.execute(
                "SELECT traveller_id, category, photos, enrolled_at_ms, verified_at_ms,"
                " recognizer FROM travellers WHERE flight = ? ORDER BY traveller_id",
                (flight,),
            ).fetchall()
        keys = ("traveller_id", "category", "photos", "enrolled_at_ms", "verified_at_ms")
        return [dict(zip((*keys, "recognizer"), row, strict=True)) for row in rows]

    def delete(self, flight: str, traveller_id: str | None = None) -> int:
        """Delete a flight's gallery (or one traveller of it); how many were deleted."""
        with self._lock, self._db:
            if traveller_id is None:
                cursor = self._db.execute("DELETE FROM travellers WHERE flight = ?", (flight,))
            else:
                cursor = self._db.execute(
                    "DELETE FROM travellers WHERE flight = ? AND traveller_id = ?",
                    (flight, traveller_id),
                )
            self._cache.pop(flight, None)
        return cursor.rowcount

    # --- search ---------------------------------------------------------------------

    def size(self, flight: str) -> int:
        """Travellers of ``flight`` this view can match (its recognizer's templates)."""
        return len(self._templates(flight)[0])

    def _templates(self, flight: str) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._cache.clear()
                self._data_version = version
            if flight not in self._cache:
                rows = self._db.execute(
                    "SELECT token, traveller_id, photos, template FROM travellers"
                    " WHERE flight = ? AND recognizer = ?",
                    (flight, self.recognizer.template_id),
                ).fetchall()
                ids = [(token, traveller) for token, traveller, _, _ in rows]
                photos = np.array([count for _, _, count, _ in rows], np.int64)
                matrix = np.array(
                    [np.frombuffer(blob, np.float32) for *_, blob in rows], np.float32
                ).reshape(len(rows), self.recognizer.dimension)
                self._cache[flight] = (ids, matrix, photos)
            return self._cache[flight]

    def nearest(self, flight: str, template: np.ndarray) -> Match | None:
        """The closest traveller on ``flight`` whatever the distance, or None if empty."""
        ids, matrix, photos = self._templates(flight)
        if not ids:
            return None
        distances = self.recognizer.distances(template, matrix)
        best = int(np.argmin(distances))
        token, traveller_id = ids[best]
        return Match(token, traveller_id, float(distances[best]), int(photos[best]))

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
                "SELECT token, traveller_id, pnr, name, photos, template FROM travellers "
                "WHERE flight = ? AND pnr = ? AND recognizer = ?",
                (flight, passenger.pnr, self.recognizer.template_id),
            ).fetchall()
        best: Match | None = None
        for token, traveller_id, pnr, name, photos, blob in rows:
            if not pnr or (name and name != passenger.name):
                continue
            stored = np.frombuffer(blob, np.float32)
            distance = float(self.recognizer.distances(template, stored[None, :])[0])
            if best is None or distance < best.distance:
                best = Match(token, traveller_id, distance, int(photos))
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
        with self._lock:  # the deleted rows' old pages leave the WAL as well
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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
    "CATEGORIES",
    "HOUR_MS",
    "LONG_RETENTION_MS",
    "MAX_PHOTOS_PER_TRAVELLER",
    "SHORT_RETENTION",
    "SHORT_RETENTION_MS",
    "Deletion",
    "EnrollmentReport",
    "Gallery",
    "ManifestEntry",
    "Match",
    "flight_key",
    "read_manifest",
    "retention_deadline",
]
