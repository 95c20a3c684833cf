"""Who has boarded this flight at this gate: a traveller is boarded once.

The matching service's traveller token (a pseudonym per traveller and flight) and the
check-in sequence of the boarding pass both identify a traveller who has passed. A grant
*claims* the token before the relay pulses; a second MATCH for the same token is refused
("already boarded, see agent") however the traveller came back: lingering in view after
the passage window, after an MCU reboot mid-grant, or after the service restarted.

The claim is made durable (one fsynced line in the register file) before it is granted,
so a crash, a watchdog kill or a power cut between the pulse and the end of the passage
cannot grant the same traveller again after the restart; a claim that cannot be written
is not granted. The register is rebuilt at start from that file and from the boarding
log's records of this flight.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from appliance.gate.outcome import Outcome
from gate_contract.documents import parse_json
from gate_contract.files import append_line

log = logging.getLogger(__name__)


class Claim(enum.Enum):
    """What a grant's claim on a traveller token came to."""

    CLAIMED = "claimed"
    ALREADY_BOARDED = "already_boarded"  # or an empty token: nobody to board
    NOT_DURABLE = "not_durable"  # the register could not be written: no grant


class BoardedTravellers:
    """Tokens and check-in sequences of the travellers who boarded one flight.

    With a ``path``, every claim, release and sequence is appended there (JSON lines,
    mode 0600, fsynced) before it counts.
    """

    def __init__(self, flight: str, path: Path | None = None) -> None:
        self.flight = flight
        self.path = path
        self._tokens: set[str] = set()
        self._sequences: set[str] = set()
        self._lock = threading.Lock()

    def open(self, flight: str, path: Path | None, log_records: Iterable[dict]) -> int:
        """Board ``flight``, keeping the register in ``path``; how many had boarded before."""
        with self._lock:
            self.flight, self.path = flight, path
            self._tokens.clear()
            self._sequences.clear()
        restored = self._restore_log(log_records)
        return restored + self._restore_register()

    def claim_token(self, token: str) -> Claim:
        """Claim ``token`` for a grant, durably; only :attr:`Claim.CLAIMED` may be granted."""
        if not token:
            return Claim.ALREADY_BOARDED
        with self._lock:
            if token in self._tokens:
                return Claim.ALREADY_BOARDED
            if not self._write({"claim": token}):
                return Claim.NOT_DURABLE
            self._tokens.add(token)
            return Claim.CLAIMED

    def release_token(self, token: str) -> None:
        """The grant did not happen after all (the gate refused the pulse)."""
        with self._lock:
            if token in self._tokens and self._write({"release": token}):
                self._tokens.discard(token)

    def add_sequence(self, sequence: str) -> None:
        with self._lock:
            if sequence not in self._sequences:
                self._write({"sequence": sequence})
                self._sequences.add(sequence)

    @property
    def sequences(self) -> set[str]:
        with self._lock:
            return set(self._sequences)

    def _write(self, entry: dict) -> bool:
        """Append one entry and fsync it; False (and an ERROR line) if it is not durable."""
        if self.path is None:
            return True
        entry = {"flight_key": self.flight, "at_s": round(time.time(), 3), **entry}
        line = (json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
        try:
            append_line(self.path, line)
        except OSError as exc:
            log.error("boarded register %s not written: %s", self.path, exc)
            return False
        return True

    def _restore_log(self, records: Iterable[dict]) -> int:
        restored = 0
        for record in records:
            if record.get("flight_key") != self.flight:
                continue
            passed = record.get("released_by_agent") or record.get("outcome") == Outcome.GRANTED
            if not passed:
                continue
            with self._lock:
                if record.get("traveller_token"):
                    self._tokens.add(str(record["traveller_token"]))
                if record.get("sequence"):
                    self._sequences.add(str(record["sequence"]))
            restored += 1
        return restored

    def _restore_register(self) -> int:
        """Replay the register file; a torn last line (a crash mid-append) is skipped."""
        if self.path is None or not self.path.exists():
            return 0
        before = len(self._tokens)
        with self._lock:
            for line in self.path.read_bytes().splitlines():
                try:
                    entry = parse_json(line)
                except ValueError:
                    log.warning("boarded register %s: a torn line skipped", self.path)
                    continue
                if not isinstance(entry, dict) or entry.get("flight_key") != self.flight:
                    continue
                if isinstance(entry.get("claim"), str):
                    self._tokens.add(entry["claim"])
                elif isinstance(entry.get("release"), str):
                    self._tokens.discard(entry["release"])
                elif isinstance(entry.get("sequence"), str):
                    self._sequences.add(entry["sequence"])
            return max(0, len(self._tokens) - before)


__all__ = ["BoardedTravellers", "Claim"]
