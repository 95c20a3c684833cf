"""Limits that keep one caller from starving the others, and logs that a flood cannot fill.

* :class:`RateLimit`: token buckets per key (a peer address, a device) and one for all
  keys together; a call over either is refused at once.
* :class:`ConcurrencyLimit`: at most ``limit`` calls in flight per key.
* :class:`BurstLog`: one log line per key per ``period_s``, counting what it held back, so
  a guessing or flooding peer leaves a few lines, not one per attempt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_KEYS = 10_000  # buckets kept at most; the oldest are forgotten first


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """``per_key_burst`` calls at once and ``per_key_rate`` per second per key; the same for
    all keys together with ``total_burst`` and ``total_rate``."""

    def __init__(
        self,
        *,
        per_key_rate: float,
        per_key_burst: int,
        total_rate: float,
        total_burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_key = (per_key_rate, per_key_burst)
        self.total = (total_rate, total_burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._all = _Bucket(float(total_burst), clock())
        self._lock = threading.Lock()

    @staticmethod
    def _take(bucket: _Bucket, rate: float, burst: int, now: float) -> bool:
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def allow(self, key: str) -> bool:
        """Count one call of ``key``; False if it is over its own or the total limit."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_KEYS:
                    self._buckets.pop(next(iter(self._buckets)))
                bucket = self._buckets[key] = _Bucket(float(self.per_key[1]), now)
            if not self._take(bucket, *self.per_key, now):
                return False
            return self._take(self._all, *self.total, now)


class ConcurrencyLimit:
    """At most ``limit`` calls in flight per key."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a concurrency limit must be at least 1")
        self.limit = limit
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """Yields True while the call may go ahead (the slot is released on exit), False if
        ``key`` already has ``limit`` calls in flight."""
        with self._lock:
            active = self._active.get(key, 0)
            admitted = active < self.limit
            if admitted:
                self._active[key] = active + 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    left = self._active[key] - 1
                    if left:
                        self._active[key] = left
                    else:
                        del self._active[key]

    def active(self, key: str) -> int:
        with self._lock:
            return self._active.get(key, 0)


class BurstLog:
    """Logs the first event of a key at once, then at most one line per ``period_s`` that
    says how many were held back."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        period_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._level = level
        self._period = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def event(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless this key logged within the period; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            if len(self._last) >= MAX_KEYS:
                self._last.pop(next(iter(self._last)))
            self._last[key] = now
            held = self._held.pop(key, 0)
        suffix = f" ({held} more like it in the last {self._period:g} s)" if held else ""
        self._log.log(self._level, message + suffix, *args)
        return True


__all__ = ["MAX_KEYS", "BurstLog", "ConcurrencyLimit", "RateLimit"]
