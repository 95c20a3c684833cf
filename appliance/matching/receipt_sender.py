"""Delivers purge receipts to the matching service off the traveller's path.

The pipeline hands each receipt over (:meth:`ReceiptSender.submit`) after the gate has
been driven, and goes on: a worker thread sends the owed receipts oldest first through
``report`` (``MatchingClient.report_purge``), and against a service that is down or
unreachable it waits and tries again, backing off to ``max_backoff_s``. The worker runs
only while receipts are owed. The queue (``appliance.custody.receipts``) keeps them on
disk, so receipts owed when the unit stopped are sent after the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from appliance.custody.receipts import ReceiptQueue
from appliance.custody.transaction import PurgeRecord

log = logging.getLogger("gate.receipts")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class ReceiptSender:
    """Sends what ``queue`` owes through ``report`` (True: the service recorded it)."""

    def __init__(
        self,
        report: Callable[[PurgeRecord], bool],
        queue: ReceiptQueue,
        *,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.queue = queue
        self._report = report
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0

    @property
    def owed(self) -> int:
        return len(self.queue)

    def submit(self, record: PurgeRecord) -> None:
        """Owe the service this receipt and have it sent soon; never blocks on the network."""
        try:
            self.queue.add(record)
        except OSError as exc:
            log.error("purge receipt for %s kept in memory only: %s", record.capture_id, exc)
        self.start()

    def start(self) -> None:
        """Send what is owed (e.g. receipts left from before a restart)."""
        with self._lock:
            if self._stop.is_set() or self._thread is not None or not len(self.queue):
                return
            self._thread = threading.Thread(target=self._run, name="purge-receipts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = self._first_backoff_s
        while not self._stop.is_set():
            with self._lock:
                record = self.queue.oldest()
                if record is None:
                    self._thread = None  # nothing owed: a later submit starts a new worker
                    return
            try:
                delivered = self._report(record)
            except Exception as exc:  # the worker must outlive any one receipt
                log.warning("purge receipt for %s: %s", record.capture_id, type(exc).__name__)
                delivered = False
            if delivered:
                self.queue.sent(record.capture_id)
                self.delivered += 1
                backoff = self._first_backoff_s
                continue
            log.info(
                "purge receipt for %s not delivered; %d owed, next try in %.1f s",
                record.capture_id,
                len(self.queue),
                backoff,
            )
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
        with self._lock:
            self._thread = None

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop sending; what is still owed stays in the queue for the next start."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)


__all__ = ["FIRST_BACKOFF_S", "MAX_BACKOFF_S", "ReceiptSender"]
