"""Retention on a schedule, as the published CBP TVS rules say.

- Live captures are never stored: the service decrypts, encodes and answers in memory,
  then zeroizes the payload, the decoded image and the live template.
- Gallery records (template, traveller id, PNR, name) of U.S. citizens and exempt
  travellers are deleted no more than 12 h after their verification; everyone else's
  within 14 days; records never verified 14 days after enrolment.
- Each deletion is written to ``retention_log`` (token, category, deadline, rule).

The scheduler runs every ``interval_s`` and deletes what falls due within the next
interval, so a record is gone *before* its deadline, not up to one interval after.
The clock is injectable (milliseconds) so the rules are tested without waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gate_contract.clock import now_ms
from matching_service.gallery import Deletion, Gallery

log = logging.getLogger("gate.matcher.retention")


class RetentionScheduler:
    def __init__(
        self,
        gallery: Gallery,
        *,
        interval_s: float = 300.0,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("retention interval must be positive")
        self._gallery = gallery
        self._interval = interval_s
        self._clock = clock_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def run_once(self) -> list[Deletion]:
        deleted = self._gallery.apply_retention(self._clock(), margin_ms=int(self._interval * 1000))
        self.runs += 1
        if deleted:
            log.info("retention: deleted %d gallery records", len(deleted))
        return deleted

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a failed run is logged and retried next period
                log.exception("retention run failed")
            self._stop.wait(self._interval)

    def start(self) -> RetentionScheduler:
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


__all__ = ["RetentionScheduler"]
