"""The boarding log: one JSON line per traveller, never an image or a template.

Each line says when the traveller started and ended, the mode, the outcome and its
reason, the gate events on the way, the flight and check-in sequence from the boarding
pass (if one was scanned; never the name or booking reference), the traveller token the
matching service put in a MATCH verdict (a pseudonym, no biometrics), the captures sent
(the last one's id, and those before it when a capture was taken again), the id and reason
code of the agent who released or cancelled, and durations.

Every record is checked before it is written: only known fields, only short printable
text, numbers, booleans or null. Bytes, arrays or long strings (anything that could be
pixels, a JPEG, a template or a sealed payload) are refused with ``ValueError``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path

from gate_contract.documents import parse_json
from gate_contract.files import append_line

log = logging.getLogger("gate.boarding_log")

MAX_TEXT = 240  # long enough for a reason, far too short for any image or template

FIELDS = frozenset(
    {
        "traveller",
        "mode",
        "started_at",
        "decided_at",
        "ended_at",
        "outcome",
        "reason",
        "event",
        "resolution",
        "released_by_agent",
        "agent_id",
        "agent_reason",
        "flight",
        "flight_key",
        "sequence",
        "pass_check",
        "pass_reason",
        "scans",
        "bad_scans",
        "traveller_token",
        "capture_id",
        "earlier_capture_ids",
        "captures_sent",
        "frame_sent",
        "frames_seen",
        "gate_ms",
        "capture_ms",
        "verify_ms",
        "agent_ms",
        "passage_ms",
        "total_ms",
    }
)


def check_record(record: dict) -> dict:
    """The record as it will be written; ``ValueError`` if it holds anything it must not."""
    clean: dict = {}
    for key, value in record.items():
        if key not in FIELDS:
            raise ValueError(f"boarding log: unknown field {key!r}")
        if value is None or isinstance(value, bool | int):
            clean[key] = value
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"boarding log: {key} is not a finite number")
            clean[key] = round(value, 1)
        elif isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise ValueError(f"boarding log: {key} is {len(value)} characters long")
            if not value.isprintable():
                raise ValueError(f"boarding log: {key} holds non-printable characters")
            clean[key] = value
        else:
            raise ValueError(f"boarding log: {key} of type {type(value).__name__} refused")
    return clean


class BoardingLog:
    """Appends checked records to ``path`` (JSON lines, mode 0600) and keeps them in memory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.records: list[dict] = []
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)

    @property
    def register_path(self) -> Path | None:
        """Where the register of who boarded is kept, beside the log (none in memory)."""
        if self.path is None:
            return None
        return self.path.with_name(f"{self.path.stem}-boarded.jsonl")

    def append(self, record: dict) -> dict:
        clean = check_record(record)
        line = json.dumps(clean, sort_keys=True, ensure_ascii=True) + "\n"
        with self._lock:
            if self.path is not None:
                append_line(self.path, line.encode("ascii"))
            self.records.append(clean)
        return clean

    def read(self) -> list[dict]:
        """Every record in the file. A line that is not one is skipped so the unit still
        starts and rebuilds who boarded: the last line at WARNING (half written when the
        power went), any other at ERROR (the airline's record of a traveller is gone)."""
        if self.path is None:
            return list(self.records)
        lines = self.path.read_bytes().splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            try:
                record = parse_json(line) if line else None
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif number == len(lines) and line:
                log.warning(
                    "boarding log %s: the last line is not a record (half written?); skipped",
                    self.path,
                )
            elif line:
                log.error("boarding log %s: line %d is not a record; skipped", self.path, number)
        return records


__all__ = ["FIELDS", "MAX_TEXT", "BoardingLog", "check_record"]
