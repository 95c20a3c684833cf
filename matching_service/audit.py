"""The service's audit trail in SQLite: security rejections, verifications, purge receipts.

Nothing biometric is ever written here: no pixels, no templates, no names. A verify-log
row holds ids, the decision, the opaque traveller token and timings; a security event
holds what was refused, why, and which gRPC status the caller got.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from matching_service.store import open_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS security_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    method TEXT NOT NULL,
    device_id TEXT NOT NULL,
    capture_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS verify_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    flight TEXT NOT NULL,
    capture_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    traveller_token TEXT NOT NULL,
    nearest_token TEXT NOT NULL,
    nearest_distance REAL,
    pass_checked INTEGER NOT NULL,
    service_ms REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS purge_receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    capture_id TEXT NOT NULL,
    sealed_sha256 TEXT NOT NULL,
    purged_at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SecurityEvent:
    at_ms: int
    event: str
    status: str
    method: str
    device_id: str
    capture_id: str
    detail: str


@dataclass(frozen=True)
class VerifyRecord:
    at_ms: int
    device_id: str
    session_id: str
    flight: str
    capture_id: str
    decision: str
    traveller_token: str
    nearest_token: str
    nearest_distance: float | None
    pass_checked: bool
    service_ms: float


def _connect(path: Path | str) -> sqlite3.Connection:
    return open_db(path)


class AuditLog:
    """Append-only audit tables; safe to call from gRPC worker threads."""

    def __init__(self, db_path: Path | str = ":memory:") -> None:
        self._db = _connect(db_path)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def security(
        self,
        event: str,
        status: str,
        *,
        method: str = "",
        device_id: str = "",
        capture_id: str = "",
        detail: str = "",
        at_ms: int | None = None,
    ) -> None:
        at = time.time_ns() // 1_000_000 if at_ms is None else at_ms
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO security_events (at_ms, event, status, method, device_id,"
                " capture_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at, event, status, method, device_id, capture_id, detail[:500]),
            )

    def events(self, event: str | None = None) -> list[SecurityEvent]:
        query = "SELECT at_ms, event, status, method, device_id, capture_id, detail"
        query += " FROM security_events"
        args: tuple = ()
        if event is not None:
            query += " WHERE event = ?"
            args = (event,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [SecurityEvent(*row) for row in rows]

    def verified(self, record: VerifyRecord) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO verify_log (at_ms, device_id, session_id, flight, capture_id,"
                " decision, traveller_token, nearest_token, nearest_distance, pass_checked,"
                " service_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.at_ms,
                    record.device_id,
                    record.session_id,
                    record.flight,
                    record.capture_id,
                    record.decision,
                    record.traveller_token,
                    record.nearest_token,
                    record.nearest_distance,
                    int(record.pass_checked),
                    record.service_ms,
                ),
            )

    def verify_log(self) -> list[VerifyRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at_ms, device_id, session_id, flight, capture_id, decision,"
                " traveller_token, nearest_token, nearest_distance, pass_checked, service_ms"
                " FROM verify_log ORDER BY id"
            ).fetchall()
        return [VerifyRecord(*row[:9], bool(row[9]), row[10]) for row in rows]

    def purge_receipt(
        self,
        at_ms: int,
        device_id: str,
        capture_id: str,
        sealed_sha256: str,
        purged_at_ms: int,
        reason: str,
    ) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO purge_receipts (at_ms, device_id, capture_id, sealed_sha256,"
                " purged_at_ms, reason) VALUES (?, ?, ?, ?, ?, ?)",
                (at_ms, device_id, capture_id, sealed_sha256, purged_at_ms, reason[:64]),
            )

    def purge_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM purge_receipts").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["AuditLog", "SecurityEvent", "VerifyRecord"]
