"""Flight sessions the gates open, and the memory of capture ids already used."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc

from matching_service.errors import Rejected
from matching_service.store import MEMORY, open_db

SESSION_TTL_MS = 24 * 3600 * 1000
CAPTURE_WINDOW_MS = 60_000  # a capture's time must be this close to the service's clock
REPLAY_MEMORY = 1_000_000  # capture ids remembered at most (a day at a busy airport)


@dataclass(frozen=True)
class Session:
    device_id: str
    flight: str
    opened_at_ms: int = 0


class SessionTable:
    """Open sessions by id; a gate opens one per flight, old ones expire after a day."""

    def __init__(self, ttl_ms: int = SESSION_TTL_MS) -> None:
        self.ttl_ms = ttl_ms
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, device_id: str, flight: str, now_ms: int) -> str:
        session_id = uuid.uuid4().hex
        with self._lock:
            stale = [k for k, v in self._sessions.items() if now_ms - v.opened_at_ms > self.ttl_ms]
            for key in stale:
                del self._sessions[key]
            self._sessions[session_id] = Session(device_id, flight, now_ms)
        return session_id

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)


REPLAY_KEEP_MS = 10 * CAPTURE_WINDOW_MS  # ids are kept well past any time they could be valid

_REPLAY_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen_captures (
    capture_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    seen_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_captures_by_time ON seen_captures (seen_at_ms);
"""


class ReplayGuard:
    """Each capture id is accepted once, across restarts: a replayed one is refused
    ``ALREADY_EXISTS``.

    Ids are kept in the service's database for ``keep_ms`` (ten capture windows): a
    capture is accepted only within ``window_ms`` of its time, and its time is sealed
    into the payload, so an id older than that can never be accepted again anyway.
    """

    def __init__(
        self,
        db_path: Path | str = MEMORY,
        *,
        window_ms: int = CAPTURE_WINDOW_MS,
        keep_ms: int = REPLAY_KEEP_MS,
        memory: int = REPLAY_MEMORY,
    ) -> None:
        self.window_ms = window_ms
        self.keep_ms = keep_ms
        self.memory = memory
        self._db = open_db(db_path)
        self._db.executescript(_REPLAY_SCHEMA)
        self._lock = threading.Lock()

    def admit(self, capture_id: str, device_id: str, now_ms: int) -> None:
        with self._lock, self._db:
            self._db.execute(
                "DELETE FROM seen_captures WHERE seen_at_ms < ?", (now_ms - self.keep_ms,)
            )
            seen = self._db.execute(
                "SELECT 1 FROM seen_captures WHERE capture_id = ?", (capture_id,)
            ).fetchone()
            if seen is not None:
                raise Rejected(
                    grpc.StatusCode.ALREADY_EXISTS,
                    "replayed_capture",
                    "capture id already used",
                    device_id=device_id,
                    capture_id=capture_id,
                )
            (count,) = self._db.execute("SELECT COUNT(*) FROM seen_captures").fetchone()
            if count >= self.memory:
                raise Rejected(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "replay_memory_full",
                    "too many captures in the window",
                    device_id=device_id,
                    capture_id=capture_id,
                )
            self._db.execute(
                "INSERT INTO seen_captures (capture_id, device_id, seen_at_ms) VALUES (?, ?, ?)",
                (capture_id, device_id, now_ms),
            )


__all__ = [
    "CAPTURE_WINDOW_MS",
    "REPLAY_KEEP_MS",
    "REPLAY_MEMORY",
    "SESSION_TTL_MS",
    "ReplayGuard",
    "Session",
    "SessionTable",
]
