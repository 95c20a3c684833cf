"""Append-only purge ledger: one JSON line per capture, hash-chained, fsynced.

Each line carries the SHA-256 of the previous line, so deleting, editing or reordering
records breaks the chain that ``verify`` walks. A small head file, replaced atomically
after every append, holds the count and the hash of the newest line, so truncating or
editing the newest record is caught too. Records hold ids, hashes and times, never
pixels.
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


def _write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a power cut leaves the old or the new file."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class PurgeLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._count, self._last = self._scan_tail()

    def _scan_tail(self) -> tuple[int, str]:
        count, last = 0, GENESIS
        if self.path.exists():
            with self.path.open("rb") as handle:
                for line in handle:
                    if line.strip():
                        count += 1
                        last = _line_hash(line.rstrip(b"\n"))
        return count, last

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
            self._count += 1
            head = {"count": self._count, "last": self._last}
            _write_durably(self.head_path, json.dumps(head).encode())

    def verify(self) -> int:
        """Walk the chain and check the head; returns the record count or raises."""
        expected = GENESIS
        count = 0
        if self.path.exists():
            with self.path.open("rb") as handle:
                for number, raw in enumerate(handle, 1):
                    line = raw.rstrip(b"\n")
                    try:
                        entry = json.loads(line)
                    except ValueError as exc:
                        raise LedgerError(f"record {number} is not valid JSON: {exc}") from exc
                    if not isinstance(entry, dict) or entry.get("prev") != expected:
                        raise LedgerError(f"record {number} does not follow record {number - 1}")
                    expected = _line_hash(line)
                    count = number
        if not self.head_path.exists():
            if count:
                raise LedgerError(f"ledger head missing for {count} records")
            return 0
        try:
            head = json.loads(self.head_path.read_bytes())
            head_count, head_last = int(head["count"]), str(head["last"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerError(f"ledger head is unreadable: {exc}") from exc
        if head_count != count:
            raise LedgerError(f"ledger holds {count} records but its head says {head_count}")
        if head_last != expected:
            raise LedgerError(f"record {count} (the newest) was altered")
        return count
