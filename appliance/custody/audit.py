"""What ``gatectl audit verify`` and ``gatectl audit export`` do, for auditors.

``audit_verify`` walks every segment of the purge ledger, checks the hash chain, the
head and (with the device's ledger public key) every signature, prints one line per
fault naming the record, and returns a non-zero exit code on any break or a torn
record. ``audit_export`` writes the records as JSON lines (ids, hashes, times; never
pixels), optionally limited to a time window, for an auditor to keep.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from appliance.custody.ledger import LedgerLine, check_ledger, list_segments, read_lines
from gate_contract.keys import load_signing_public

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2


def default_public_key_path(ledger_path: Path) -> Path:
    """The ledger key's public half, where the service keeps it by default."""
    return ledger_path.with_name("ledger-signing.pub")


def default_key_path(ledger_path: Path) -> Path:
    """The device ledger key, next to the ledger (the service passes it to PurgeLedger)."""
    return ledger_path.with_name("ledger-signing.key")


def audit_verify(
    path: Path, public_key_path: Path | None = None, out: Callable[[str], object] = print
) -> int:
    """Verify the ledger at ``path``; 0 when intact, 1 on any break or torn record, 2 on usage.

    Without ``public_key_path`` the key next to the ledger (``ledger-signing.pub``) is
    used if present, else only the hash chain is checked (and the output says so).
    """
    if not list_segments(path):
        out(f"no purge ledger at {path}")
        return EXIT_BROKEN
    key_note = "signatures not checked (no ledger public key given)"
    public_key = None
    candidate = public_key_path or default_public_key_path(path)
    if public_key_path is not None or candidate.exists():
        try:
            public_key = load_signing_public(candidate)
        except (OSError, ValueError) as exc:
            out(f"ledger public key {candidate}: {exc}")
            return EXIT_USAGE
        key_note = f"signatures verified with {candidate}"
    report = check_ledger(path, public_key)
    for problem in report.problems:
        out(f"BROKEN: {problem}")
    if report.torn:
        out(f"TORN: {report.torn}")
    for note in report.notes:
        out(f"note: {note}")
    state = "intact" if report.ok else "NOT intact"
    out(
        f"{path}: {report.records} records in {report.segments} segment(s), "
        f"chain {state}, {key_note}"
    )
    return EXIT_OK if report.ok else EXIT_BROKEN


def _as_ms(moment: dt.datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # naive times are read as UTC
    return int(moment.timestamp() * 1000)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _record_time(entry: dict) -> int | None:
    for key in ("purged_at_ms", "at_ms"):
        value = entry.get(key)
        if isinstance(value, int):
            return value
    return None


def audit_export(
    path: Path,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Write the ledger's records as JSON lines (``since`` <= purge time < ``until``).

    Each line is the stored record (``prev`` and ``sig`` included, so an auditor can
    re-check it) plus ``record`` (its number in the ledger), ``segment`` and an ISO 8601
    ``purged_at``. Returns 1 (after writing) if the ledger does not verify as a chain or
    ends in a torn record, with the reason on stderr; 0 otherwise.
    """
    if not list_segments(path):
        print(f"no purge ledger at {path}", file=sys.stderr)
        return EXIT_BROKEN
    low, high = _as_ms(since), _as_ms(until)
    for item in read_lines(path):
        if not isinstance(item, LedgerLine) or item.entry is None:
            continue
        moment = _record_time(item.entry)
        if moment is not None:
            if low is not None and moment < low:
                continue
            if high is not None and moment >= high:
                continue
        elif low is not None or high is not None:
            continue
        row = {"record": item.number, "segment": item.segment, **item.entry}
        if moment is not None:
            row["purged_at" if "purged_at_ms" in item.entry else "at"] = _iso(moment)
        out.write(json.dumps(row, sort_keys=True) + "\n")
    out.flush()
    candidate = default_public_key_path(path)
    try:
        public_key = load_signing_public(candidate) if candidate.exists() else None
    except (OSError, ValueError) as exc:
        print(f"warning: ledger public key {candidate}: {exc}", file=sys.stderr)
        public_key = None
    report = check_ledger(path, public_key)
    if not report.ok:
        print(
            f"warning: the ledger does not verify: {(report.problems or [report.torn])[0]}",
            file=sys.stderr,
        )
        return EXIT_BROKEN
    return EXIT_OK


__all__ = [
    "EXIT_BROKEN",
    "EXIT_OK",
    "EXIT_USAGE",
    "audit_export",
    "audit_verify",
    "default_key_path",
    "default_public_key_path",
]
