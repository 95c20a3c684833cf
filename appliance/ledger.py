"""Append-only purge ledger: one JSON line per capture, hash-chained, fsynced.

Each line carries the SHA-256 of the previous line, so deleting, editing or reordering
records breaks the chain that ``verify`` walks. Records hold ids, hashes and times,
never pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from appliance.transaction import PurgeRecord

GENESIS = "0" * 64


class LedgerError(ValueError):
    """The ledger's chain is broken at a named record."""


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class PurgeLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._last = self._tail_hash()

    def _tail_hash(self) -> str:
        if not self.path.exists():
            return GENESIS
        last = GENESIS
        with self.path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    last = _line_hash(line.rstrip(b"\n"))
        return last

    def append(self, record: PurgeRecord) -> None:
        with self._lock:
            entry = {"prev": self._last, **record.to_dict()}
            line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._last = _line_hash(line)

    def verify(self) -> int:
        """Walk the chain; returns the record count or raises ``LedgerError``."""
        expected = GENESIS
        count = 0
        if not self.path.exists():
            return 0
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                line = raw.rstrip(b"\n")
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    raise LedgerError(f"record {number} is not valid JSON: {exc}") from exc
                if entry.get("prev") != expected:
                    raise LedgerError(f"record {number} does not follow record {number - 1}")
                expected = _line_hash(line)
                count += 1
        return count
