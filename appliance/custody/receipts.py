"""Purge receipts still owed to the matching service, kept on disk until delivered.

A receipt tells the service that a capture it received is purged on the unit. Sending
one must never hold a traveller up, and one that cannot be sent now (matcher down,
partition) must not be forgotten, not even across a restart. The queue is a JSON-lines
file of ``{"due": record}`` lines (fsynced) and ``{"sent": capture_id}`` lines; what is
due and not sent is re-read at start. Records hold ids, hashes and times, never pixels.
The file is compacted at open and emptied once nothing is owed.

Without a path the queue lives in memory only (the demo and the simulation, whose
matcher lives no longer than they do).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from appliance.custody.transaction import PurgeRecord
from gate_contract.documents import parse_json
from gate_contract.files import write_private

log = logging.getLogger("gate.receipts")

COMPACT_BYTES = 256 * 1024  # an all-delivered queue file larger than this is emptied


def receipt_queue_path(ledger_path: Path) -> Path:
    """Where the service keeps the receipt queue: next to the purge ledger."""
    return ledger_path.with_name("purge-receipts.jsonl")


class ReceiptQueue:
    """Receipts owed to the service, oldest first; thread-safe."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._due: OrderedDict[str, PurgeRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._size = 0
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        if path.exists():
            for raw in path.read_bytes().splitlines():
                try:
                    line = parse_json(raw)
                    if "due" in line:
                        record = PurgeRecord(**line["due"])
                        self._due[record.capture_id] = record
                    elif "sent" in line:
                        self._due.pop(str(line["sent"]), None)
                except (ValueError, TypeError, KeyError):
                    log.warning("receipt queue %s: unreadable line skipped", path.name)
        body = b"".join(_line({"due": r.to_dict()}) for r in self._due.values())
        try:
            write_private(path, body)
            self._size = len(body)
        except OSError as exc:
            log.error("receipt queue %s not compacted: %s", path, exc)
        if self._due:
            log.info("receipt queue: %d purge receipts still owed to the service", len(self._due))

    def __len__(self) -> int:
        return len(self._due)

    def add(self, record: PurgeRecord) -> None:
        """Owe the service this receipt. Raises ``OSError`` if it could not be made durable
        (it is then owed from memory only)."""
        with self._lock:
            self._due[record.capture_id] = record
            self._append(_line({"due": record.to_dict()}), sync=True)

    def oldest(self) -> PurgeRecord | None:
        with self._lock:
            return next(iter(self._due.values()), None)

    def sent(self, capture_id: str) -> None:
        """The service has it. A lost "sent" line only means one receipt is sent twice."""
        with self._lock:
            if self._due.pop(capture_id, None) is None:
                return
            if not self._due and self._size > COMPACT_BYTES and self.path is not None:
                with contextlib.suppress(OSError):
                    write_private(self.path, b"")
                    self._size = 0
                    return
            with contextlib.suppress(OSError):
                self._append(_line({"sent": capture_id}), sync=False)

    def _append(self, line: bytes, *, sync: bool) -> None:
        if self.path is None:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                if sync:
                    os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size)  # no fragment to spoil the next line
                raise
        finally:
            os.close(fd)
        self._size += len(line)


def _line(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"


__all__ = ["COMPACT_BYTES", "ReceiptQueue", "receipt_queue_path"]
