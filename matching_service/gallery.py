"""Flight galleries: templates of the travellers booked on each flight, in SQLite.

A gallery is built once from a manifest of document photos (JSON: a list of
``{"traveller_id", "category", "photo"}``) and kept as templates only; the photos
themselves are never stored. Matching is 1:N by Euclidean distance between dlib
descriptors within one flight's gallery.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from matching_service.recognizer import FaceEncoder

# dlib's published operating point for its ResNet descriptor (99.38 % on LFW).
DEFAULT_THRESHOLD = 0.6
CATEGORIES = ("us_citizen", "in_scope")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS travellers (
    flight TEXT NOT NULL,
    traveller_id TEXT NOT NULL,
    category TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    template BLOB NOT NULL,
    PRIMARY KEY (flight, traveller_id)
);
"""


class GalleryError(ValueError):
    """A manifest or photo that cannot be enrolled, with the reason."""


@dataclass(frozen=True)
class Match:
    token: str
    traveller_id: str
    distance: float


def flight_key(carrier: str, flight_number: str, date: str, departure_airport: str) -> str:
    """One flight's name in the store, e.g. ``BA0283/2026-11-25/LAX``."""
    return f"{carrier.upper()}{flight_number.zfill(4)}/{date}/{departure_airport.upper()}"


class Gallery:
    """Templates per flight with 1:N search; safe to call from gRPC worker threads."""

    def __init__(self, db_path: Path | str, threshold: float = DEFAULT_THRESHOLD) -> None:
        self._db = sqlite3.connect(str(db_path), check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[list[tuple[str, str]], np.ndarray]] = {}
        self.threshold = threshold

    def enroll_manifest(self, flight: str, manifest: Path, encoder: FaceEncoder) -> int:
        """Compute and store templates for every traveller in ``manifest``; returns count."""
        try:
            entries = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise GalleryError(f"cannot read gallery manifest {manifest}: {exc}") from exc
        if not isinstance(entries, list):
            raise GalleryError(f"{manifest}: expected a JSON list of travellers")
        rows = []
        for number, entry in enumerate(entries, 1):
            try:
                traveller_id, category = str(entry["traveller_id"]), str(entry["category"])
                photo = (manifest.parent / entry["photo"]).resolve()
            except (KeyError, TypeError) as exc:
                raise GalleryError(f"{manifest} entry {number}: missing field {exc}") from exc
            if category not in CATEGORIES:
                raise GalleryError(f"{manifest} entry {number}: unknown category {category!r}")
            image = cv2.imread(str(photo))
            if image is None:
                raise GalleryError(f"{manifest} entry {number}: cannot read photo {photo}")
            template = encoder.encode(image)
            rows.append((flight, traveller_id, category, secrets.token_hex(16), template.tobytes()))
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO travellers VALUES (?, ?, ?, ?, ?)", rows)
            self._cache.pop(flight, None)
        return len(rows)

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

    def search(self, flight: str, template: np.ndarray) -> Match | None:
        """The closest traveller on ``flight`` within the threshold, or None."""
        ids, matrix = self._templates(flight)
        if not ids:
            return None
        distances = np.linalg.norm(matrix - template[None, :], axis=1)
        best = int(np.argmin(distances))
        if distances[best] > self.threshold:
            return None
        token, traveller_id = ids[best]
        return Match(token, traveller_id, float(distances[best]))
