"""Flight sessions the gates open, and the memory of capture ids already used."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import grpc

from matching_service.errors import Rejected

SESSION_TTL_MS = 24 * 3600 * 1000
CAPTURE_WINDOW_MS = 60_000  # a capture's time must be this close to the service's clock
REPLAY_MEMORY = 100_000  # capture ids remembered at most (within twice the window)


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


class ReplayGuard:
    """Each capture id is accepted once: a replayed one is refused ``ALREADY_EXISTS``."""

    def __init__(self, window_ms: int = CAPTURE_WINDOW_MS, memory: int = REPLAY_MEMORY) -> None:
        self.window_ms = window_ms
        self.memory = memory
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, capture_id: str, device_id: str, now_ms: int) -> None:
        with self._lock:
            while self._seen:  # ids older than the window cannot come back anyway
                oldest, seen_at = next(iter(self._seen.items()))
                if now_ms - seen_at <= 2 * self.window_ms:
                    break
                del self._seen[oldest]
            if capture_id in self._seen:
                raise Rejected(
                    grpc.StatusCode.ALREADY_EXISTS,
                    "replayed_capture",
                    "capture id already used",
                    device_id=device_id,
                    capture_id=capture_id,
                )
            if len(self._seen) >= self.memory:
                raise Rejected(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "replay_memory_full",
                    "too many captures in the window",
                    device_id=device_id,
                    capture_id=capture_id,
                )
            self._seen[capture_id] = now_ms


__all__ = [
    "CAPTURE_WINDOW_MS",
    "REPLAY_MEMORY",
    "SESSION_TTL_MS",
    "ReplayGuard",
    "Session",
    "SessionTable",
]
