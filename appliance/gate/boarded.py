"""Who has boarded this flight at this gate: a traveller is boarded once.

The matching service's traveller token (a pseudonym per traveller and flight) and the
check-in sequence of the boarding pass both identify a traveller who has passed. A grant
*claims* the token before the relay pulses; a second MATCH for the same token is refused
("already boarded, see agent") however the traveller came back: lingering in view after
the passage window, after an MCU reboot mid-grant, or after the service restarted, since
the register is rebuilt from the boarding log's records of this flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from appliance.gate.outcome import Outcome


class BoardedTravellers:
    """Tokens and check-in sequences of the travellers who boarded one flight."""

    def __init__(self, flight: str) -> None:
        self.flight = flight
        self._tokens: set[str] = set()
        self._sequences: set[str] = set()
        self._lock = threading.Lock()

    def claim_token(self, token: str) -> bool:
        """Claim ``token`` for a grant; False if it already boarded (or is empty)."""
        if not token:
            return False
        with self._lock:
            if token in self._tokens:
                return False
            self._tokens.add(token)
            return True

    def release_token(self, token: str) -> None:
        """The grant did not happen after all (the gate refused the pulse)."""
        with self._lock:
            self._tokens.discard(token)

    def add_sequence(self, sequence: str) -> None:
        with self._lock:
            self._sequences.add(sequence)

    @property
    def sequences(self) -> set[str]:
        with self._lock:
            return set(self._sequences)

    def start_flight(self, flight: str, records: Iterable[dict]) -> int:
        """Board another flight (the flight of the day changed): forget this one's
        travellers and take in the boarding log's records of that one."""
        with self._lock:
            self.flight = flight
            self._tokens.clear()
            self._sequences.clear()
        return self.restore(records)

    def restore(self, records: Iterable[dict]) -> int:
        """Take in the boarding log's records of this flight (after a restart)."""
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


__all__ = ["BoardedTravellers"]
