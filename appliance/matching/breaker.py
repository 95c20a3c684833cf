"""A circuit breaker for the matching service: after repeated transport failures every
call fails at once, so a traveller is referred without waiting on a dead service."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from appliance.errors import CircuitOpen


class CircuitBreaker:
    """Closed -> (N failures in a row) -> open -> (cool-down) -> half-open -> closed/open.

    ``clock`` is injectable (monotonic seconds) so the states can be tested without
    waiting. In half-open state one caller at a time gets to probe; others fail fast.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._state = self.CLOSED
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                return self.HALF_OPEN
            return self._state

    def acquire(self) -> bool:
        """May a call go ahead? Returns True if this caller must probe first.

        Raises ``CircuitOpen`` while open (or while another caller is probing).
        """
        with self._lock:
            if self._state == self.CLOSED:
                return False
            if self._state == self.OPEN:
                remaining = self.cooldown_s - (self._clock() - self._opened_at)
                if remaining > 0:
                    raise CircuitOpen(
                        f"matching service unavailable (circuit open, retry in {remaining:.1f} s)"
                    )
                self._state = self.HALF_OPEN
            if self._probing:
                raise CircuitOpen("matching service unavailable (circuit half-open, probing)")
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._state = self.CLOSED
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._probing = False
            if self._state == self.HALF_OPEN:
                self._trip()
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._trip()

    def release(self) -> None:
        """A probe ended without telling anything about the service (e.g. bad request)."""
        with self._lock:
            self._probing = False

    def _trip(self) -> None:
        self._state = self.OPEN
        self._opened_at = self._clock()
        self._failures = 0


__all__ = ["CircuitBreaker"]
