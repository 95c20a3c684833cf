"""The gate workflow around the state machine: modes, scans, agent actions, boarding log.

Two modes:

* biometric-first: the camera matches 1:N; a boarding pass is scanned only for exceptions
  (a referral, an opt-out) and then only checked and noted, or, at a ready gate, used to
  run that one traveller as pass-then-face;
* pass-then-face: the agent scans the pass first. It is checked against the flight: a
  wrong flight, wrong date, wrong departure airport, a pass without check-in or one
  already boarded each refer the traveller with their own reason and nothing is
  captured. A pass that checks out starts the capture, and the raw barcode goes in the
  capture header so the matching service confirms the face is the pass's passenger
  (``NO_MATCH``: someone else's pass).

An unreadable scan changes nothing at the gate (the agent rescans); it is counted on the
traveller's record. Agent badges release, cancel or record an opt-out; an agent who
logged in at the agent station releases or cancels with a reason code
(:meth:`GateWorkflow.agent_command`). Either way the agent's id goes in the record.
:meth:`GateWorkflow.card` says who is at the gate (name and seat from the pass, for the
agent's screen; never logged).

Each traveller gets one boarding-log line (``appliance.gate.boarding_log``) when the gate is
back to ready (door passage, no passage, agent cancel...) or goes out of service.
"""

from __future__ import annotations

import datetime
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from appliance.gate.agents import AgentAction, AgentCommand, CancelReason, ReleaseReason
from appliance.gate.boarded import BoardedTravellers
from appliance.gate.boarding_log import BoardingLog
from appliance.gate.flight import Flight
from appliance.gate.machine import Event, GateController, State, Transition
from appliance.gate.outcome import Outcome, TravellerOutcome
from appliance.gate.passes import PassCheck, PassOutcome, check_against_flight
from appliance.gate.scanner import ScanParser, ScanRefused
from gate_contract.bcbp import BoardingPass

if TYPE_CHECKING:
    from appliance.vision.camera import FrameSource

log = logging.getLogger("gate.workflow")


class Mode(enum.StrEnum):
    BIOMETRIC_FIRST = "biometric_first"
    PASS_THEN_FACE = "pass_then_face"


class TravellerRun(Protocol):
    """One traveller's capture and verdict (``appliance.pipeline.TravellerPipeline``)."""

    gate: GateController
    boarded: BoardedTravellers  # the flight's register: a grant claims the token once

    def process(self, source: FrameSource, boarding_pass: str = "") -> TravellerOutcome: ...


_ENDS = frozenset({State.READY, State.OUT_OF_SERVICE})
_WITH_THE_AGENT = frozenset({State.REFER_TO_AGENT, State.MANUAL_CHECK})


def _iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="milliseconds")


@dataclass
class _Traveller:
    number: int
    started: float  # perf_counter
    started_at: float  # time.time
    raw_pass: str | None = None  # only for the capture header; never logged
    passenger: str = ""  # the name on the pass, for the agent's screen; never logged
    check: PassCheck | None = None
    scans: int = 0
    bad_scans: int = 0
    in_process: bool = False
    decided: float | None = None
    outcome: TravellerOutcome | None = None
    released_at: float | None = None
    granted_at: float | None = None
    ended_by: Transition | None = None
    agent_id: str | None = None  # the agent who released or cancelled
    agent_reason: str | None = None  # their reason code (agent station)
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TravellerCard:
    """The traveller at the gate as the agent's screen shows them (no biometrics)."""

    number: int
    passenger: str  # name from the pass; "" if none was scanned
    seat: str
    flight: str
    pass_check: PassOutcome | None
    scans: int
    bad_scans: int
    outcome: Outcome | None  # decided so far (None: still in progress)


class GateWorkflow:
    """One gate boarding one flight; thread-safe (scanner, MCU events, the camera loop)."""

    def __init__(
        self,
        boarding: TravellerRun,
        flight: Flight,
        *,
        mode: Mode | str = Mode.BIOMETRIC_FIRST,
        boarding_log: BoardingLog | None = None,
        scanner: ScanParser | None = None,
    ) -> None:
        self.boarding = boarding
        self.gate: GateController = boarding.gate
        self.flight = flight
        self.mode = Mode(mode)
        self.flight_date = datetime.date.fromisoformat(flight.date)
        self.log = boarding_log or BoardingLog()
        self.scanner = scanner or ScanParser(reference_date=self.flight_date)
        # Who boarded: shared with the pipeline, rebuilt from this flight's log records.
        self.boarded = boarding.boarded
        restored = self.boarded.open(flight.key, self.log.register_path, self.log.read())
        if restored:
            log.info("%d travellers of %s boarded before this start", restored, flight.name)
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._current: _Traveller | None = None
        self._count = 0
        self.gate.on_transition(self._on_transition)

    def change_flight(self, flight: Flight, also: Callable[[], object] | None = None) -> bool:
        """Board ``flight`` from the next traveller on (``gatectl flight set``, applied
        by the service on a reload); False, and nothing changed, while a traveller is at
        the gate. ``also`` runs under the same lock (no traveller can start meanwhile):
        the service closes the old flight's session there."""
        with self._lock:
            if self._current is not None:
                return False
            self.flight = flight
            self.flight_date = datetime.date.fromisoformat(flight.date)
            restored = self.boarded.open(flight.key, self.log.register_path, self.log.read())
            if also is not None:
                also()
        log.info("now boarding %s (%d boarded before)", flight.name, restored)
        return True

    # --- who is at the gate -------------------------------------------------------------

    @property
    def current(self) -> _Traveller | None:
        return self._current

    def card(self) -> TravellerCard | None:
        """Who is at the gate now, for the agent's screen (None: nobody)."""
        with self._lock:
            traveller = self._current
            if traveller is None:
                return None
            check = traveller.check
            leg = check.leg if check is not None else None
            outcome = traveller.outcome.outcome if traveller.outcome else None
            return TravellerCard(
                number=traveller.number,
                passenger=traveller.passenger,
                seat=leg.seat if leg is not None else "",
                flight=f"{leg.carrier}{leg.flight_number}" if leg is not None else "",
                pass_check=check.outcome if check is not None else None,
                scans=traveller.scans,
                bad_scans=traveller.bad_scans,
                outcome=outcome or traveller.fields.get("outcome"),
            )

    def _open(self) -> _Traveller:
        with self._lock:
            if self._current is None:
                self._count += 1
                self._current = _Traveller(self._count, time.perf_counter(), time.time())
            return self._current

    def wants_capture(self) -> bool:
        """Has the workflow a traveller for the camera now? (otherwise the loop waits)

        ``capturing``: a pass checked out (pass-then-face, or a pass at a ready gate in
        biometric-first). ``ready``: biometric-first captures whoever steps up;
        pass-then-face waits for the pass. ``manual_check`` with the opt-out not yet taken:
        ``board`` records it (no capture). Anything else waits: for the agent
        (``refer_to_agent``, ``manual_check``), or for the passage after a grant or
        release; so does a traveller already decided (e.g. a refused pass, then the opt-out
        button): ``board`` would only repeat the decision.
        """
        phase = self.gate.phase
        current = self._current
        if current is not None and current.decided is not None:
            return False
        if phase is State.CAPTURING:
            return True
        if phase is State.READY:
            return self.mode is Mode.BIOMETRIC_FIRST
        if phase is State.MANUAL_CHECK:
            return self.gate.opt_out_pending()
        return False

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the traveller in progress is logged (False on timeout)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._current is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    # --- scans --------------------------------------------------------------------------

    def scan(self, text: str | bytes) -> PassCheck | AgentAction | ScanRefused:
        """One scanned line: a boarding pass (checked), an agent badge, or an error."""
        result = self.scanner.parse(text)
        if isinstance(result, ScanRefused):
            log.warning("scan refused: %s (field %s)", result.reason, result.field)
            with self._lock:
                if self._current is not None or self.gate.phase is State.READY:
                    traveller = self._open()
                    traveller.scans += 1
                    traveller.bad_scans += 1
            return result
        if isinstance(result, AgentAction):
            self._agent(result)
            return result
        raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        return self._pass(result, raw.strip("\r\n"))

    def _pass(self, bp: BoardingPass, raw: str) -> PassCheck:
        check = check_against_flight(
            bp,
            carrier=self.flight.carrier,
            flight_number=self.flight.flight_number,
            date=self.flight_date,
            departure_airport=self.flight.departure_airport,
            boarded_sequences=self.boarded.sequences,
        )
        fields = {}
        if check.leg is not None:
            leg = check.leg
            fields = {"flight": f"{leg.carrier}{leg.flight_number}", "sequence": leg.sequence}
        reason = f"pass {check.outcome.value}: {check.reason}"
        with self._lock:
            phase = self.gate.phase
            if phase not in (State.READY, State.REFER_TO_AGENT, State.MANUAL_CHECK):
                self.gate.fire(Event.PASS_SCANNED if check.ok else Event.PASS_REFUSED, reason)
                return check  # refused by the table: a capture or a passage is under way
            traveller = self._open()
            traveller.scans += 1
            traveller.check = check
            traveller.passenger = bp.name
            if phase is State.READY and check.ok:
                traveller.raw_pass = raw
            event = Event.PASS_SCANNED if check.ok else Event.PASS_REFUSED
            self.gate.fire(event, reason, **fields)
            if phase is State.READY and not check.ok:
                traveller.decided = time.perf_counter()
                traveller.fields.update(outcome=Outcome.REFERRED, reason=reason[:200])
        return check

    def agent_command(
        self, agent_id: str, command: AgentCommand, reason: ReleaseReason | CancelReason
    ) -> bool:
        """An authenticated agent's release or cancel with its reason code; True if the
        gate took it. The agent's id and reason go in the traveller's boarding-log line."""
        if command is AgentCommand.RELEASE and not isinstance(reason, ReleaseReason):
            raise ValueError(f"{reason!r} is not a reason to release")
        if command is AgentCommand.CANCEL and not isinstance(reason, CancelReason):
            raise ValueError(f"{reason!r} is not a reason to cancel")
        if command not in (AgentCommand.RELEASE, AgentCommand.CANCEL):
            raise ValueError(f"{command} is not an agent station command")
        self._note_agent(agent_id, command, reason.value)
        who = f"agent {agent_id}"
        if command is AgentCommand.RELEASE:
            return self.gate.agent_release(f"{who} released the gate ({reason.value})")
        return self.gate.agent_cancel(f"{who} cancelled ({reason.value})")

    def _note_agent(self, agent_id: str, command: AgentCommand, reason: str | None) -> None:
        """Put the agent on the traveller's record; a release with nobody open (a referral
        the gate made by itself) opens a record, so that every opening is logged."""
        with self._lock:
            if command is AgentCommand.RELEASE and self.gate.phase in _WITH_THE_AGENT:
                self._open()
            if self._current is not None:
                self._current.agent_id = agent_id
                self._current.agent_reason = reason

    def _agent(self, action: AgentAction) -> None:
        who = f"agent {action.agent_id}"
        if action.command in (AgentCommand.RELEASE, AgentCommand.CANCEL):
            self._note_agent(action.agent_id, action.command, None)
        if action.command is AgentCommand.RELEASE:
            self.gate.agent_release(f"{who} released the gate")
        elif action.command is AgentCommand.CANCEL:
            self.gate.agent_cancel(f"{who} cancelled")
        elif action.command is AgentCommand.OPTOUT:
            with self._lock:
                if self.gate.phase is State.READY:
                    self._open()
            self.gate.opt_out(f"{who}: traveller opts out")

    # --- the face -----------------------------------------------------------------------

    def board(self, source: FrameSource) -> TravellerOutcome:
        """Run the capture for the traveller at the gate (after the pass, in pass-then-face)."""
        with self._lock:
            traveller = self._open()
            if traveller.decided is not None:
                return TravellerOutcome(Outcome.REFERRED, traveller.fields.get("reason", "refused"))
            if self.mode is Mode.PASS_THEN_FACE and traveller.raw_pass is None:
                phase = self.gate.phase
                if phase is not State.MANUAL_CHECK and not self.gate.opt_out_pending():
                    return TravellerOutcome(Outcome.REFERRED, "scan the boarding pass first")
            traveller.in_process = True
        outcome = self.boarding.process(source, traveller.raw_pass or "")
        with self._lock:
            traveller.in_process = False
            traveller.decided = time.perf_counter()
            traveller.outcome = outcome
            if outcome.outcome is Outcome.GRANTED:
                traveller.granted_at = traveller.decided
                self._mark_boarded(traveller)
            if outcome.outcome is Outcome.NO_FACE and traveller.check is None:
                self._current = None  # nobody was there: not a traveller
                self._idle.notify_all()
            elif traveller.ended_by is not None or self.gate.phase in _ENDS:
                self._conclude(traveller, traveller.ended_by)
        return outcome

    def _mark_boarded(self, traveller: _Traveller) -> None:
        check = traveller.check
        if check is not None and check.ok and check.leg is not None and check.leg.sequence:
            self.boarded.add_sequence(check.leg.sequence)

    # --- the end of a traveller ---------------------------------------------------------

    def _on_transition(self, step: Transition) -> None:
        if not step.accepted:
            return
        with self._lock:
            traveller = self._current
            if traveller is None:
                return
            if step.event is Event.AGENT_RELEASE:
                traveller.released_at = time.perf_counter()
                if traveller.decided is None:
                    traveller.decided = traveller.released_at
                    traveller.fields.setdefault("outcome", Outcome.AGENT_RELEASED)
                self._mark_boarded(traveller)
            if step.target not in _ENDS or step.source in _ENDS:
                return
            traveller.ended_by = step
            if traveller.in_process:
                return  # board() concludes when the capture has been purged
            if traveller.decided is None:
                traveller.decided = time.perf_counter()
                traveller.fields.setdefault("outcome", Outcome.CANCELLED)
                traveller.fields.setdefault("reason", step.reason[:200])
            self._conclude(traveller, step)

    def _conclude(self, traveller: _Traveller, step: Transition | None) -> None:
        now = time.perf_counter()
        out = traveller.outcome
        check = traveller.check
        decided = traveller.decided or now

        def ms(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else (end - start) * 1000

        waited_for_agent = traveller.released_at or (
            now if step is not None and step.event in (Event.AGENT_CANCEL, Event.RESET) else None
        )
        passage_from = traveller.granted_at or traveller.released_at
        record = {
            "traveller": traveller.number,
            "flight_key": self.flight.key,
            "mode": self.mode.value,
            "started_at": _iso(traveller.started_at),
            "decided_at": _iso(traveller.started_at + (decided - traveller.started)),
            "ended_at": _iso(time.time()),
            "outcome": out.outcome if out else traveller.fields.get("outcome", Outcome.CANCELLED),
            "reason": (out.reason if out else traveller.fields.get("reason", ""))[:200],
            "event": out.event if out and out.event else None,
            "resolution": step.event.value if step else self.gate.phase.value,
            "released_by_agent": traveller.released_at is not None,
            "agent_id": traveller.agent_id,
            "agent_reason": traveller.agent_reason,
            "flight": None,
            "sequence": None,
            "pass_check": check.outcome.value if check else None,
            "pass_reason": check.reason[:200] if check else None,
            "scans": traveller.scans,
            "bad_scans": traveller.bad_scans,
            "traveller_token": (out.traveller_token or None) if out else None,
            "capture_id": (out.capture_id or None) if out else None,
            "earlier_capture_ids": (" ".join(out.earlier_capture_ids) or None) if out else None,
            "captures_sent": (len(out.earlier_capture_ids) + out.frame_sent) if out else 0,
            "frame_sent": bool(out and out.frame_sent),
            "frames_seen": out.frames_seen if out else 0,
            "gate_ms": ms(traveller.started, decided),
            "capture_ms": out.capture_ms if out else None,
            "verify_ms": out.verify_ms if out else None,
            "agent_ms": ms(decided, waited_for_agent) if waited_for_agent else None,
            "passage_ms": ms(passage_from, now) if passage_from else None,
            "total_ms": ms(traveller.started, now),
        }
        if check is not None and check.leg is not None:
            leg = check.leg
            record["flight"] = f"{leg.carrier}{leg.flight_number} {leg.flight_date.isoformat()}"
            record["sequence"] = leg.sequence or None
        try:
            self.log.append(record)
        except (OSError, ValueError) as exc:  # the gate goes on; the journal says why
            log.error("boarding log: record %d not written: %s", traveller.number, exc)
        if self._current is traveller:
            self._current = None
        self._idle.notify_all()


__all__ = ["GateWorkflow", "Mode", "TravellerCard", "TravellerRun"]
