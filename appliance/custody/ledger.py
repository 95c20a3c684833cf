"""Append-only purge ledger: one JSON line per capture, hash-chained, signed, fsynced.

Each line carries ``prev``, the SHA-256 of the previous line, so deleting, editing or
reordering records breaks the chain that ``verify`` walks. With a device ledger key
(Ed25519) every line also carries ``sig``, a signature over the line without it
(``prev`` included), so a record cannot be forged or rewritten without the key. A
small head file, replaced atomically after every append, holds the count and the hash
of the newest line (signed too), so truncating or editing the newest record is caught.
Records hold ids, hashes and times, never pixels.

Segments: the ledger rotates by size. Segment 1 is ``path`` itself, later ones are
``<stem>.000002<suffix>``, ``<stem>.000003<suffix>``...; the chain runs on across
segments and ``verify`` walks them in order.

Whole or not at all: a line is written at the end of the last good record (every
short write is continued, a partial tail of an earlier failed write is cut off first),
fsynced, and only then is the head replaced; if any step fails (disk full, I/O error,
file size limit) the line is cut off again, the head keeps its old, consistent value
and the record waits in memory (``pending``) while ``durable`` is False. Each later
append, and :meth:`PurgeLedger.retry`, writes the waiting records first, in order, so
once space returns the chain goes on unbroken.

Intent records: before a sealed capture leaves the unit, ``open_intent`` makes a
``capture_sent`` event durable (capture id, sealed hash, times); the capture's purge
record closes it. A capture whose record never came (the process was killed, or the
record could not be written before it died) is closed when the ledger is next opened:
a record with reason ``purged by process exit`` (``closed_at_open``), so the auditor
sees every capture that ever left the unit.

Power loss: a line is fsynced before the head is replaced. A cut can leave (a) a torn
last line, without its end of line, which ``verify`` reports as torn while every
record before it still verifies; opening the ledger to append then cuts the torn bytes
off and appends a signed ``torn_record_discarded`` event naming their hash, so the
loss stays on the record; or (b) a complete last line the head does not count yet,
which verify accepts (the head may lag by exactly the newest record) and the next
append brings the head up to date.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.custody.transaction import PurgeRecord
from appliance.errors import LedgerError, TornRecordError
from appliance.shutdown import deferred_shutdown
from gate_contract.clock import now_ms
from gate_contract.documents import parse_json
from gate_contract.files import fsync_dir, write_private
from gate_contract.keys import load_private, write_private_key, write_public_key

log = logging.getLogger("gate.ledger")

GENESIS = "0" * 64
DEFAULT_SEGMENT_BYTES = 4 * 1024 * 1024
_RECORD_DOMAIN = b"gate.v1 purge-ledger record\n"
_HEAD_DOMAIN = b"gate.v1 purge-ledger head\n"
TORN_EVENT = "torn_record_discarded"
INTENT_EVENT = "capture_sent"
EXIT_REASON = "purged by process exit"
EXIT_OUTCOME = "interrupted"
_INTENT_MARK = b'"event":"' + INTENT_EVENT.encode() + b'"'


# --- keys -----------------------------------------------------------------------------------


def ledger_public_key_path(key_path: Path) -> Path:
    """Where the public half of a ledger key is kept (next to it, ``.pub``)."""
    return key_path.with_suffix(".pub")


def load_or_create_ledger_key(key_path: Path) -> Ed25519PrivateKey:
    """The device ledger key at ``key_path`` (PEM, 0600), made on first use.

    The public half is written next to it (``ledger_public_key_path``) for auditors.
    """
    if key_path.exists():
        key = load_private(key_path)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{key_path} is not an Ed25519 private key")
    else:
        key = Ed25519PrivateKey.generate()
        write_private_key(key_path, key)
    public_path = ledger_public_key_path(key_path)
    if not public_path.exists():
        write_public_key(public_path, key.public_key())
    return key


# --- format ---------------------------------------------------------------------------------


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _canonical(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()


def _signed(entry: dict, key: Ed25519PrivateKey | None, domain: bytes) -> dict:
    if key is None:
        return entry
    return {**entry, "sig": key.sign(domain + _canonical(entry)).hex()}


def _signature_problem(entry: dict, key: Ed25519PublicKey, domain: bytes) -> str | None:
    body = dict(entry)
    sig = body.pop("sig", None)
    if not isinstance(sig, str):
        return "is not signed"
    try:
        key.verify(bytes.fromhex(sig), domain + _canonical(body))
    except (ValueError, InvalidSignature):
        return "has a bad signature"
    return None


def segment_path(path: Path, number: int) -> Path:
    """File of segment ``number`` (1 is ``path`` itself)."""
    if number == 1:
        return path
    return path.with_name(f"{path.stem}.{number:06d}{path.suffix}")


def list_segments(path: Path) -> list[tuple[int, Path]]:
    """Every segment file of the ledger at ``path``, in order (gaps included as found)."""
    found = [(1, path)] if path.exists() else []
    pattern = re.compile(re.escape(path.stem) + r"\.(\d{6})" + re.escape(path.suffix) + "$")
    if path.parent.is_dir():
        for candidate in path.parent.iterdir():
            match = pattern.match(candidate.name)
            if match and int(match.group(1)) >= 2:
                found.append((int(match.group(1)), candidate))
    return sorted(found)


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


# --- writing --------------------------------------------------------------------------------


class PurgeLedger:
    """The device's purge ledger; ``signing_key`` (a key or a key file) turns on signatures.

    Without a key the ledger is hash-chained only (unsigned mode, for development and
    old callers); a verifier holding the device's public key rejects unsigned records.
    """

    def __init__(
        self,
        path: Path,
        signing_key: Ed25519PrivateKey | Path | None = None,
        *,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        self.path = path
        self.head_path = _head_path(path)
        if isinstance(signing_key, (str, Path)):
            signing_key = load_or_create_ledger_key(Path(signing_key))
        self._key = signing_key
        self.public_key = signing_key.public_key() if signing_key is not None else None
        self.max_segment_bytes = max_segment_bytes
        self._lock = threading.Lock()
        self.recovered: str | None = None
        self.failure: str | None = None  # why the newest append failed, if it did
        self._pending: deque[dict] = deque()  # records not yet durable, oldest first
        self._open_intents: dict[str, dict] = {}  # capture id -> its capture_sent entry
        self.closed_at_open: list[PurgeRecord] = []  # captures a crash left without a record
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._open_tail()
            self._close_open_intents()
            self._write_pending_logged()

    @property
    def signed(self) -> bool:
        return self._key is not None

    @property
    def count(self) -> int:
        return self._count

    def _open_tail(self) -> None:
        segments = list_segments(self.path)
        self._segment = segments[-1][0] if segments else 1
        self._count, self._last = 0, GENESIS
        torn = b""
        for index, (_, segment) in enumerate(segments):
            data = segment.read_bytes()
            complete, _, tail = data.rpartition(b"\n")
            self._count += data.count(b"\n")
            if complete or data.startswith(b"\n"):
                self._last = _line_hash(complete.rsplit(b"\n", 1)[-1])
                self._note_intents(complete)
            if index == len(segments) - 1:
                torn = tail
                self._segment_size = len(data) - len(tail)
        if not segments:
            self._segment_size = 0
        if torn:
            self._discard_torn_tail(torn)

    def _note_intents(self, lines: bytes) -> None:
        """Follow which captures were sent and not yet closed (lines of one segment)."""
        for raw in lines.split(b"\n"):
            if _INTENT_MARK in raw:
                entry = _json_object(raw)
                if entry is not None and isinstance(entry.get("capture_id"), str):
                    self._open_intents[entry["capture_id"]] = entry
            elif self._open_intents and b'"capture_id"' in raw:
                entry = _json_object(raw)
                if entry is not None:
                    self._open_intents.pop(entry.get("capture_id"), None)

    def _close_open_intents(self) -> None:
        """Every capture sent before the last exit and never closed gets its record now."""
        for intent in self._open_intents.values():
            record = PurgeRecord(
                capture_id=str(intent["capture_id"]),
                device_id=str(intent.get("device_id", "")),
                sealed_sha256=str(intent.get("sealed_sha256", "")),
                captured_at_ms=int(intent.get("captured_at_ms", 0)),
                sent_at_ms=int(intent.get("at_ms", 0)),
                verdict_at_ms=0,
                purged_at_ms=now_ms(),
                outcome=EXIT_OUTCOME,
                reason=EXIT_REASON,
                buffers_zeroized=0,
                bytes_zeroized=0,
            )
            log.warning(
                "purge ledger: capture %s was sent before the last exit and never closed;"
                " recorded as %s",
                record.capture_id,
                EXIT_REASON,
            )
            self._pending.append(record.to_dict())
            self.closed_at_open.append(record)
        self._open_intents.clear()

    def _write_pending_logged(self) -> None:
        try:
            self._write_pending()
        except OSError as exc:
            log.error("purge ledger not durable: %s", self.failure or exc)

    def _discard_torn_tail(self, torn: bytes) -> None:
        """Cut a torn last line off and put its loss on the record (signed, chained)."""
        segment = segment_path(self.path, self._segment)
        digest = hashlib.sha256(torn).hexdigest()
        with open(segment, "r+b") as handle:
            handle.truncate(self._segment_size)
            handle.flush()
            os.fsync(handle.fileno())
        self.recovered = (
            f"{segment.name}: discarded a torn record of {len(torn)} bytes "
            f"(sha256 {digest}) left by an interrupted append"
        )
        log.warning("purge ledger %s", self.recovered)
        self._pending.append(
            {
                "event": TORN_EVENT,
                "torn_bytes": len(torn),
                "torn_sha256": digest,
                "segment": segment.name,
                "at_ms": now_ms(),
            }
        )

    @property
    def durable(self) -> bool:
        """False from a failed append (disk full, I/O error) until every waiting record
        has been written."""
        return self.failure is None and not self._pending

    @property
    def pending(self) -> int:
        """Records waiting in memory for the disk (they are written, in order, first)."""
        return len(self._pending)

    def append(self, record: PurgeRecord) -> None:
        """Make ``record`` durable after every record still waiting; whole or not at all.

        Raises ``OSError`` when it cannot be written now: it then waits in memory, in
        order, for the next append or :meth:`retry`.
        """
        with self._lock, deferred_shutdown():
            self._pending.append(record.to_dict())
            self._write_pending()

    def retry(self) -> bool:
        """Write the records still waiting; True once the ledger is durable again."""
        with self._lock, deferred_shutdown():
            try:
                self._write_pending()
            except OSError:
                return False
            return True

    def open_intent(
        self, capture_id: str, device_id: str, sealed_sha256: str, captured_at_ms: int
    ) -> None:
        """Record, durably, that this sealed capture is about to leave the unit.

        Raises ``OSError`` (and nothing of the intent is kept) when it cannot be made
        durable, or when earlier records are still waiting: the capture must not be sent.
        """
        with self._lock, deferred_shutdown():
            self._write_pending()
            entry = {
                "event": INTENT_EVENT,
                "capture_id": capture_id,
                "device_id": device_id,
                "sealed_sha256": sealed_sha256,
                "captured_at_ms": captured_at_ms,
                "at_ms": now_ms(),
            }
            try:
                self._append_entry({"prev": self._last, **entry})
            except OSError as exc:
                self.failure = _why(exc)
                raise

    def _write_pending(self) -> None:
        while self._pending:
            try:
                self._append_entry({"prev": self._last, **self._pending[0]})
            except OSError as exc:
                self.failure = _why(exc)
                raise
            self._pending.popleft()
        self.failure = None

    def _append_entry(self, entry: dict) -> None:
        """Write one line whole, then the head; on any failure leave both as they were."""
        line = _canonical(_signed(entry, self._key, _RECORD_DOMAIN)) + b"\n"
        number, size = self._segment, self._segment_size
        if size and size + len(line) > self.max_segment_bytes:
            number, size = number + 1, 0
        segment = segment_path(self.path, number)
        created = not segment.exists()
        fd = os.open(segment, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                if os.fstat(fd).st_size != size:
                    os.ftruncate(fd, size)  # the partial tail of an earlier failed write
                _write_whole(fd, line, size)
                os.fsync(fd)
                if created:
                    fsync_dir(segment.parent)
                last, count = _line_hash(line[:-1]), self._count + 1
                head = {"count": count, "last": last, "segment": number}
                write_private(self.head_path, _canonical(_signed(head, self._key, _HEAD_DOMAIN)))
            except OSError:
                _cut_back(fd, size)
                if created:
                    with contextlib.suppress(OSError):
                        os.unlink(segment)
                raise
        finally:
            os.close(fd)
        self._segment, self._segment_size = number, size + len(line)
        self._last, self._count = last, count
        if entry.get("event") == INTENT_EVENT:
            self._open_intents[entry["capture_id"]] = entry
        else:
            self._open_intents.pop(entry.get("capture_id"), None)

    def check(self, public_key: Ed25519PublicKey | None = None) -> VerifyReport:
        """Walk the whole ledger (``public_key`` defaults to this ledger's own key)."""
        return check_ledger(self.path, public_key or self.public_key)

    def verify(self, public_key: Ed25519PublicKey | None = None) -> int:
        """Walk the chain (and signatures) and check the head; returns the count or raises.

        Raises ``LedgerError`` naming the first broken record, or ``TornRecordError``
        if the only fault is a torn newest record.
        """
        return self.check(public_key).raise_for_problems()


def _write_whole(fd: int, line: bytes, offset: int) -> None:
    """Write all of ``line`` at ``offset``, going on after short writes (a file size limit,
    a nearly full disk); an error from any write is raised."""
    view = memoryview(line)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no byte written")
        view, offset = view[written:], offset + written


def _cut_back(fd: int, size: int) -> None:
    """Cut a failed write off; if even that fails, the next append cuts it first."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)
        os.fsync(fd)


def _why(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return f"{name}: {exc.strerror or exc}"


def _json_object(raw: bytes) -> dict | None:
    try:
        entry = parse_json(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


# --- reading and verifying --------------------------------------------------------------


@dataclass
class LedgerLine:
    number: int  # position in the whole ledger, 1-based, across segments
    segment: str
    line: int  # 1-based within the segment
    raw: bytes
    entry: dict | None  # None when the line is not a JSON object

    @property
    def label(self) -> str:
        where = f"{self.segment} line {self.line}"
        if self.entry and isinstance(self.entry.get("capture_id"), str):
            return f"capture {self.entry['capture_id']}, {where}"
        if self.entry and isinstance(self.entry.get("event"), str):
            return f"event {self.entry['event']}, {where}"
        return where


@dataclass
class VerifyReport:
    path: Path
    records: int = 0  # complete records walked
    segments: int = 0
    signatures_checked: bool = False
    problems: list[str] = field(default_factory=list)
    torn: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.torn is None

    def raise_for_problems(self) -> int:
        if self.problems:
            raise LedgerError(self.problems[0])
        if self.torn is not None:
            raise TornRecordError(self.torn, self.records)
        return self.records


def read_lines(path: Path) -> Iterator[LedgerLine | tuple[str, bytes]]:
    """Every complete line of every segment, in order; a torn tail comes as ("torn", bytes)."""
    segments = list_segments(path)
    number = 0
    for index, (_, segment) in enumerate(segments):
        data = segment.read_bytes()
        parts = data.split(b"\n")
        tail = parts.pop()
        if tail and index < len(segments) - 1:
            parts.append(tail)  # a missing end of line mid-ledger: checked like any line
            tail = b""
        for line_number, raw in enumerate(parts, 1):
            number += 1
            try:
                entry = parse_json(raw)
            except ValueError:
                entry = None
            yield LedgerLine(
                number, segment.name, line_number, raw, entry if isinstance(entry, dict) else None
            )
        if tail:
            yield (segment.name, tail)


def check_ledger(path: Path, public_key: Ed25519PublicKey | None = None) -> VerifyReport:
    """Verify the ledger at ``path`` without changing it; every fault is named in the report.

    With ``public_key`` every record and the head must carry a valid signature.
    """
    segments = list_segments(path)
    report = VerifyReport(path, segments=len(segments), signatures_checked=public_key is not None)
    numbers = [n for n, _ in segments]
    for expected_number, (n, segment) in zip(range(1, len(numbers) + 1), segments, strict=True):
        if n != expected_number:
            report.problems.append(
                f"segment {expected_number} is missing (found {segment.name} in its place)"
            )
            break
    expected, before_last = GENESIS, GENESIS
    count = 0
    for item in read_lines(path):
        if isinstance(item, tuple):
            segment_name, tail = item
            report.torn = (
                f"record {count + 1} is torn ({segment_name}, {len(tail)} bytes without an end "
                f"of line: an append cut short, e.g. by power loss); the {count} records "
                "before it were checked"
            )
            continue
        count = item.number
        if item.entry is None:
            report.problems.append(f"record {count} is not valid JSON ({item.label})")
        else:
            if item.entry.get("prev") != expected:
                report.problems.append(
                    f"record {count} does not follow record {count - 1} ({item.label}): "
                    "hash chain broken (edited, deleted or reordered record)"
                )
            if public_key is not None:
                problem = _signature_problem(item.entry, public_key, _RECORD_DOMAIN)
                if problem:
                    report.problems.append(f"record {count} {problem} ({item.label})")
            if item.entry.get("event") == TORN_EVENT:
                report.notes.append(
                    f"record {count} notes a torn record discarded after a power loss "
                    f"({item.entry.get('torn_bytes')} bytes, {item.label})"
                )
        before_last, expected = expected, _line_hash(item.raw)
    report.records = count
    _check_head(path, report, expected, before_last, public_key)
    return report


def _check_head(
    path: Path,
    report: VerifyReport,
    last: str,
    before_last: str,
    public_key: Ed25519PublicKey | None,
) -> None:
    count = report.records
    head_path = _head_path(path)
    if not head_path.exists():
        if count:
            report.problems.append(f"ledger head missing for {count} records")
        return
    try:
        head = parse_json(head_path.read_bytes())
        head_count, head_last = int(head["count"]), str(head["last"])
    except (ValueError, KeyError, TypeError) as exc:
        report.problems.append(f"ledger head is unreadable: {exc}")
        return
    if public_key is not None:
        problem = _signature_problem(head, public_key, _HEAD_DOMAIN)
        if problem:
            report.problems.append(f"ledger head {problem}")
    if head_count == count and head_last == last:
        return
    if head_count == count - 1 and head_last == before_last:
        report.notes.append(
            f"record {count} (the newest) is not counted by the head yet "
            "(power lost between the append and the head update)"
        )
        return
    if head_count == count:
        report.problems.append(f"record {count} (the newest) was altered")
    elif head_count > count:
        report.problems.append(
            f"ledger holds {count} records but its head says {head_count}: "
            f"record {count + 1} onwards deleted"
        )
    else:
        report.problems.append(f"ledger holds {count} records but its head says {head_count}")


__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "EXIT_OUTCOME",
    "EXIT_REASON",
    "GENESIS",
    "INTENT_EVENT",
    "TORN_EVENT",
    "LedgerLine",
    "PurgeLedger",
    "VerifyReport",
    "check_ledger",
    "ledger_public_key_path",
    "list_segments",
    "load_or_create_ledger_key",
    "read_lines",
    "segment_path",
]
