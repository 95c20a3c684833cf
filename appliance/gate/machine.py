"""The gate's state machine over the serial link: relay, indicator, opt-out button, door.

The machine is explicit and table-driven: ``TRANSITIONS`` maps ``(state, event)`` to the
next state, the indicator pattern to show and what to do with the relay. Every
transition carries a reason, drives the relay first (close, or an authenticated pulse),
then the indicator, and writes one log line (states, event, reason; never biometrics).
A ``(state, event)`` pair that is not in the table is refused with a log line and changes
nothing: every state but ``granted`` and ``agent_released`` has the relay closed, so the
gate stays safe.

Fail secure: the relay is opened only by a ``match`` or an ``agent_release`` (a pulse the
firmware caps and closes by itself); every fault path refers or goes out of service with
the relay closed. If a command cannot be delivered the gate is out of service until the
link returns (the firmware closes the relay on its own when heartbeats stop).

A grant ends when the door has opened and closed. If the door never opens within the
passage window, the relay is closed and the gate goes back to ready ("no passage"); if it
opens and is held open past the window, the traveller is referred ("door held open").

Events from the MCU (opt-out button, door, boot, fault, link up/down) arrive on the
link's event thread and are fired at once: an opt-out takes the gate to ``manual_check``
whatever it was doing, and the capture in progress sees :meth:`GateController.cancelled`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from firmware_bridge.host import (
    Boot,
    CommandRejected,
    DoorChanged,
    Fault,
    GateLink,
    LinkError,
    LinkState,
    OptOutPressed,
)
from firmware_bridge.protocol import Indicator, Result

log = logging.getLogger("gate.state")

DEFAULT_PASSAGE_WINDOW_S = 5.0


class State(Enum):
    READY = "ready"
    CAPTURING = "capturing"
    VERIFYING = "verifying"
    GRANTED = "granted"
    REFER_TO_AGENT = "refer_to_agent"
    MANUAL_CHECK = "manual_check"
    AGENT_RELEASED = "agent_released"
    OUT_OF_SERVICE = "out_of_service"


class Event(Enum):
    STARTED = "started"  # the link is up and the gate was greeted
    CAPTURE_STARTED = "capture_started"
    NOBODY = "nobody"  # capture window ended without any face: nobody was there
    FRAME_SENT = "frame_sent"
    RETAKE = "retake"  # the capture was not verified: the traveller is captured once more
    MATCH = "match"
    NO_MATCH = "no_match"  # pass-then-face: not the passenger named on the pass
    NOT_ON_FLIGHT = "not_on_flight"
    UNUSABLE = "unusable"  # the service could not use the image
    NO_USABLE_FACE = "no_usable_face"  # capture window ended, no frame good enough
    ALREADY_BOARDED = "already_boarded"  # a match for a traveller who boarded already
    VERDICT_TIMEOUT = "verdict_timeout"
    MATCHER_UNAVAILABLE = "matcher_unavailable"
    ERROR = "error"  # internal error, rejected verdict, dead camera, shutdown
    OPT_OUT = "opt_out"  # button or agent action
    AGENT_RELEASE = "agent_release"
    AGENT_CANCEL = "agent_cancel"
    RESET = "reset"  # next traveller (the unattended loop's "ready")
    PASS_SCANNED = "pass_scanned"  # a pass that checks out against the flight
    PASS_REFUSED = "pass_refused"  # wrong flight/date/airport, already boarded, bad scan
    DOOR_OPENED = "door_opened"
    DOOR_CLOSED = "door_closed"
    PASSAGE_TIMEOUT = "passage_timeout"  # door never opened within the passage window
    DOOR_HELD_OPEN = "door_held_open"  # opened, not closed within the passage window
    LINK_LOST = "link_lost"
    LINK_RESTORED = "link_restored"
    FAULT = "fault"
    LEDGER_FAILED = "ledger_failed"  # purge records cannot be made durable: stop granting
    LEDGER_RESTORED = "ledger_restored"  # they can again (only ends a ledger outage)


class Relay(Enum):
    KEEP = "keep"
    CLOSE = "close"
    PULSE = "pulse"


@dataclass(frozen=True)
class Rule:
    target: State
    indicator: int | None
    relay: Relay = Relay.CLOSE
    commands: bool = True  # False: the link is known down, do not try it


S, E = State, Event
_REFER = Rule(S.REFER_TO_AGENT, Indicator.SEE_AGENT)
_MANUAL = Rule(S.MANUAL_CHECK, Indicator.OPT_OUT_ACK)
_READY = Rule(S.READY, Indicator.READY)
_OUT = Rule(S.OUT_OF_SERVICE, Indicator.OUT_OF_SERVICE)
_LOST = Rule(S.OUT_OF_SERVICE, None, Relay.KEEP, commands=False)
_CAPTURE = Rule(S.CAPTURING, Indicator.CAPTURING)
_GRANT = Rule(S.GRANTED, Indicator.GRANTED, Relay.PULSE)
_RELEASE = Rule(S.AGENT_RELEASED, Indicator.GRANTED, Relay.PULSE)
_SAME_GRANTED = Rule(S.GRANTED, None, Relay.KEEP)
_SAME_RELEASED = Rule(S.AGENT_RELEASED, None, Relay.KEEP)

TRANSITIONS: dict[tuple[State, Event], Rule] = {
    (S.OUT_OF_SERVICE, E.STARTED): _READY,
    (S.READY, E.STARTED): _READY,
    (S.OUT_OF_SERVICE, E.LINK_RESTORED): _READY,
    (S.OUT_OF_SERVICE, E.LEDGER_RESTORED): _READY,  # guarded: only after LEDGER_FAILED
    # biometric-first: the camera starts the transaction
    (S.READY, E.CAPTURE_STARTED): _CAPTURE,
    (S.CAPTURING, E.CAPTURE_STARTED): _CAPTURE,
    (S.REFER_TO_AGENT, E.CAPTURE_STARTED): _CAPTURE,  # unattended loop: next traveller
    # pass-then-face: the agent scans the pass first
    (S.READY, E.PASS_SCANNED): _CAPTURE,
    (S.READY, E.PASS_REFUSED): _REFER,
    (S.REFER_TO_AGENT, E.PASS_SCANNED): Rule(S.REFER_TO_AGENT, None, Relay.KEEP),
    (S.REFER_TO_AGENT, E.PASS_REFUSED): Rule(S.REFER_TO_AGENT, None, Relay.KEEP),
    (S.MANUAL_CHECK, E.PASS_SCANNED): Rule(S.MANUAL_CHECK, None, Relay.KEEP),
    (S.MANUAL_CHECK, E.PASS_REFUSED): Rule(S.MANUAL_CHECK, None, Relay.KEEP),
    # capture window results
    (S.CAPTURING, E.NOBODY): _READY,
    (S.CAPTURING, E.NO_USABLE_FACE): _REFER,
    (S.CAPTURING, E.FRAME_SENT): Rule(S.VERIFYING, Indicator.CAPTURING),
    # a second look that found no better face: referred for the first verdict (guarded:
    # only after a retake)
    (S.CAPTURING, E.NO_MATCH): _REFER,
    (S.CAPTURING, E.NOT_ON_FLIGHT): _REFER,
    (S.CAPTURING, E.UNUSABLE): _REFER,
    # verdicts and their failures
    (S.VERIFYING, E.MATCH): _GRANT,
    (S.VERIFYING, E.RETAKE): _CAPTURE,
    (S.VERIFYING, E.NO_MATCH): _REFER,
    (S.VERIFYING, E.NOT_ON_FLIGHT): _REFER,
    (S.VERIFYING, E.UNUSABLE): _REFER,
    (S.VERIFYING, E.ALREADY_BOARDED): _REFER,
    (S.VERIFYING, E.VERDICT_TIMEOUT): _REFER,
    (S.VERIFYING, E.MATCHER_UNAVAILABLE): _REFER,
    # passage
    (S.GRANTED, E.DOOR_OPENED): _SAME_GRANTED,
    (S.GRANTED, E.DOOR_CLOSED): _READY,  # guarded: only after the door opened
    (S.GRANTED, E.PASSAGE_TIMEOUT): Rule(S.READY, Indicator.READY),
    (S.GRANTED, E.DOOR_HELD_OPEN): _REFER,
    (S.AGENT_RELEASED, E.DOOR_OPENED): _SAME_RELEASED,
    (S.AGENT_RELEASED, E.DOOR_CLOSED): _READY,  # guarded: only after the door opened
    (S.AGENT_RELEASED, E.PASSAGE_TIMEOUT): Rule(S.READY, Indicator.READY),
    (S.AGENT_RELEASED, E.DOOR_HELD_OPEN): _REFER,
    # the agent
    (S.REFER_TO_AGENT, E.AGENT_RELEASE): _RELEASE,
    (S.MANUAL_CHECK, E.AGENT_RELEASE): _RELEASE,
    # the unattended loop's "next traveller": a pulse in progress is left to run out
    (S.READY, E.RESET): Rule(S.READY, Indicator.READY),
    (S.REFER_TO_AGENT, E.RESET): _READY,
    (S.MANUAL_CHECK, E.RESET): _READY,
    (S.GRANTED, E.RESET): Rule(S.READY, Indicator.READY, Relay.KEEP),
    (S.AGENT_RELEASED, E.RESET): Rule(S.READY, Indicator.READY, Relay.KEEP),
}
for _state in (
    S.READY,
    S.CAPTURING,
    S.VERIFYING,
    S.GRANTED,
    S.REFER_TO_AGENT,
    S.MANUAL_CHECK,
    S.AGENT_RELEASED,
):
    # opt-out at any moment: stop, purge, nothing more sent, agent checks documents
    TRANSITIONS[(_state, E.OPT_OUT)] = _MANUAL
    # a fault anywhere refers (relay closed), the link going down takes the gate out
    TRANSITIONS[(_state, E.ERROR)] = _REFER
    TRANSITIONS[(_state, E.LINK_LOST)] = _LOST
    TRANSITIONS[(_state, E.FAULT)] = _OUT
    TRANSITIONS[(_state, E.LEDGER_FAILED)] = _OUT
    if _state is not S.READY:
        TRANSITIONS[(_state, E.AGENT_CANCEL)] = _READY
TRANSITIONS[(S.OUT_OF_SERVICE, E.ERROR)] = _OUT
TRANSITIONS[(S.OUT_OF_SERVICE, E.FAULT)] = _OUT
TRANSITIONS[(S.OUT_OF_SERVICE, E.LINK_LOST)] = _LOST
# A button press while out of service is remembered (opt_out_pending) and honoured later.
TRANSITIONS[(S.OUT_OF_SERVICE, E.OPT_OUT)] = Rule(S.OUT_OF_SERVICE, None, Relay.KEEP)
del _state

PASSAGE_STATES = frozenset({S.GRANTED, S.AGENT_RELEASED})
TRANSACTION_STATES = frozenset({S.CAPTURING, S.VERIFYING})


@dataclass(frozen=True)
class Transition:
    """One step of the machine, as logged and given to listeners."""

    at: float  # time.time()
    source: State
    event: Event
    target: State
    reason: str
    accepted: bool = True
    fields: dict = field(default_factory=dict)

    def line(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.fields.items())
        if not self.accepted:
            return (
                f"refused {self.event.value} in {self.source.value} ({self.reason}):"
                f" gate stays {self.source.value}{extra}"
            )
        arrow = f"{self.source.value} -> {self.target.value}"
        return f"{arrow} on {self.event.value}: {self.reason}{extra}"


_FIELD_TYPES = (str, int, float, bool)
_RESOLVING = frozenset({E.AGENT_RELEASE, E.AGENT_CANCEL, E.RESET})


class GateController:
    """The table-driven gate machine over a :class:`GateLink` (or anything with its commands,
    e.g. ``testbed.testing.FakeLink``)."""

    def __init__(
        self,
        link: GateLink,
        *,
        pulse_ms: int = 3000,
        passage_window_s: float = DEFAULT_PASSAGE_WINDOW_S,
        history: int = 1000,
    ) -> None:
        if passage_window_s <= 0:
            raise ValueError("passage_window_s must be positive")
        self._link = link
        self._pulse_ms = pulse_ms
        self.passage_window_s = passage_window_s
        self._opt_out = threading.Event()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._phase = State.OUT_OF_SERVICE
        self._out_cause: Event | None = None  # the event that took the gate out of service
        self._door_open = False
        self._door_opened = False  # since the current grant began
        self._retaking = False  # capturing again after a capture was not verified
        self._timer: threading.Timer | None = None
        self._timer_gen = 0
        self._listeners: list[Callable[[Transition], None]] = []
        self.history: deque[Transition] = deque(maxlen=history)
        link.on_event(self._on_event)

    # --- reading it ------------------------------------------------------------------

    @property
    def phase(self) -> State:
        return self._phase

    @property
    def out_of_service_cause(self) -> Event | None:
        """The event that last took the gate out of service (None before it ever was)."""
        return self._out_cause

    @property
    def door_open(self) -> bool:
        return self._door_open

    def opt_out_pending(self) -> bool:
        return self._opt_out.is_set()

    def cancelled(self) -> bool:
        """Must the transaction in progress stop? (opt-out, agent cancel, link lost...)"""
        return self._opt_out.is_set() or self._phase not in TRANSACTION_STATES

    def on_transition(self, callback: Callable[[Transition], None]) -> None:
        self._listeners.append(callback)

    def wait_for(self, *phases: State, timeout: float) -> bool:
        """Wait until the gate is in one of ``phases`` (False on timeout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._phase not in phases:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    # --- the engine ------------------------------------------------------------------

    def fire(self, event: Event, reason: str = "", **fields: object) -> bool:
        """Apply ``event``; False (and a log line) if the table has no such transition."""
        reason = reason or event.value.replace("_", " ")
        clean = {k: v for k, v in fields.items() if isinstance(v, _FIELD_TYPES)}
        with self._lock:
            source = self._phase
            rule = TRANSITIONS.get((source, event))
            if rule is not None and not self._guard(source, event):
                rule = None
            if rule is None:
                step = Transition(time.time(), source, event, source, reason, False, clean)
                log.warning("gate: %s", step.line())
                self.history.append(step)
            else:
                target = self._apply(rule)
                if target is not rule.target:
                    reason = f"{reason}; {target.value}: command not delivered"
                step = Transition(time.time(), source, event, target, reason, True, clean)
                log.info("gate: %s", step.line())
                self._enter(source, event, target)
                self.history.append(step)
        # Listeners run outside the machine's lock: they may take their own locks.
        self._notify(step)
        return step.accepted and step.target is rule.target

    def _guard(self, source: State, event: Event) -> bool:
        if event is E.MATCH:
            # The button may have been pressed while the verdict was on its way: the
            # opt-out wins, the relay stays shut (the opt-out event follows).
            return not self._opt_out.is_set()
        if event is E.DOOR_CLOSED:
            return self._door_opened  # a grant ends only after the door opened
        if event is E.PASSAGE_TIMEOUT:
            return not self._door_opened
        if event is E.DOOR_HELD_OPEN:
            return self._door_opened and self._door_open
        if event is E.LEDGER_RESTORED:
            return self._out_cause is E.LEDGER_FAILED  # never ends a link or MCU outage
        if source is S.CAPTURING and event in (E.NO_MATCH, E.NOT_ON_FLIGHT, E.UNUSABLE):
            return self._retaking  # a verdict while capturing: the one before a retake
        return True

    def _apply(self, rule: Rule) -> State:
        """Drive relay then indicator; the state actually reached."""
        if not rule.commands:
            return rule.target
        try:
            if rule.relay is Relay.PULSE:
                self._link.pulse_relay(self._pulse_ms)
            elif rule.relay is Relay.CLOSE:
                self._link.close_relay()
            if rule.indicator is not None:
                self._link.set_indicator(rule.indicator)
            return rule.target
        except CommandRejected as exc:
            if rule.target is S.OUT_OF_SERVICE:
                # A rebooted MCU refuses the old session's commands (stale, bad): no pulse
                # outlives the MCU's own timer, and the gate takes nobody until the link is
                # back. A refused authentication is a tampered line or the wrong key.
                if exc.result == Result.REJECTED_AUTH:
                    log.error("gate: %s while going out of service", exc)
                else:
                    log.warning("gate: %s while going out of service", exc)
                return S.OUT_OF_SERVICE
            log.error("gate: %s", exc)
            try:  # the link works but refused: shut and send to the agent
                self._link.close_relay()
                self._link.set_indicator(Indicator.SEE_AGENT)
                return S.REFER_TO_AGENT
            except (LinkError, CommandRejected) as again:
                log.error("gate: %s", again)
                return S.OUT_OF_SERVICE
        except LinkError as exc:
            # The firmware closes the relay itself once heartbeats stop.
            log.error("gate link down: %s", exc)
            return S.OUT_OF_SERVICE

    def _enter(self, source: State, event: Event, target: State) -> None:
        self._phase = target
        self._retaking = event is E.RETAKE
        if target is S.OUT_OF_SERVICE:
            self._out_cause = event
        if event in _RESOLVING:
            self._opt_out.clear()  # the agent dealt with it: the next traveller starts afresh
        if target in PASSAGE_STATES and source is not target:
            self._door_opened = False
            self._arm_passage_timer()
        elif target in PASSAGE_STATES and event is E.DOOR_OPENED:
            self._arm_passage_timer()  # time to walk through
        elif target not in PASSAGE_STATES:
            self._disarm_timer()
        self._changed.notify_all()

    def _notify(self, step: Transition) -> None:
        for callback in list(self._listeners):
            try:
                callback(step)
            except Exception:
                log.exception("gate transition listener failed")

    def _arm_passage_timer(self) -> None:
        self._disarm_timer()
        gen = self._timer_gen
        timer = threading.Timer(self.passage_window_s, self._passage_timeout, (gen,))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _disarm_timer(self) -> None:
        self._timer_gen += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _passage_timeout(self, gen: int) -> None:
        with self._lock:
            if gen != self._timer_gen or self._phase not in PASSAGE_STATES:
                return
            held = self._door_opened
        # (the table and its guards still decide if the state moved on meanwhile)
        if held:
            self.fire(E.DOOR_HELD_OPEN, "door held open past the passage window")
        else:
            self.fire(E.PASSAGE_TIMEOUT, "no passage")

    def _on_event(self, event: object) -> None:
        # Runs on the link's event thread (it may send commands: the reader is not blocked).
        if isinstance(event, OptOutPressed):
            self._opt_out.set()
            self.fire(E.OPT_OUT, "opt-out button")
        elif isinstance(event, DoorChanged):
            with self._lock:
                self._door_open = event.open
                if event.open and self._phase in PASSAGE_STATES:
                    self._door_opened = True
            self.fire(E.DOOR_OPENED if event.open else E.DOOR_CLOSED)
        elif isinstance(event, Boot):
            self.fire(E.FAULT, f"MCU rebooted (firmware {event.fw_version})")
        elif isinstance(event, Fault):
            self.fire(E.FAULT, f"MCU fault {event.name}")
        elif isinstance(event, LinkState):
            if not event.up:
                self.fire(E.LINK_LOST, "serial link to the MCU lost")
            elif self._phase is S.OUT_OF_SERVICE:
                self.fire(E.LINK_RESTORED, "serial link to the MCU back")

    # --- commands ---------------------------------------------------------------------

    def start(self) -> None:
        """Greet the firmware and show "ready"; the gate stays shut until a grant.

        Raises the link's errors (start-up must fail loudly).
        """
        self._link.hello()
        self._link.close_relay()
        self.fire(E.STARTED, "gate started")

    def ready(self, reason: str = "next traveller") -> bool:
        return self.fire(E.RESET, reason)

    def capturing(self, reason: str = "capture started") -> bool:
        return self.fire(E.CAPTURE_STARTED, reason)

    def grant(self, reason: str = "match", **fields: object) -> bool:
        """Open the barrier for one passage; True only if the pulse was delivered."""
        return self.fire(E.MATCH, reason, **fields)

    def refer(self, reason: str = "see agent", event: Event = E.ERROR, **fields: object) -> bool:
        """Keep the barrier shut and send the traveller to the agent."""
        return self.fire(event, reason, **fields)

    def acknowledge_opt_out(self, reason: str = "opted out") -> None:
        """The traveller opted out: no photo; the agent checks documents by hand."""
        self._opt_out.clear()
        if self._phase is not S.MANUAL_CHECK:
            self.fire(E.OPT_OUT, reason)

    def opt_out(self, reason: str = "agent: traveller opts out") -> bool:
        """The agent records an opt-out (same as the button)."""
        self._opt_out.set()
        return self.fire(E.OPT_OUT, reason)

    def agent_release(self, reason: str = "agent released the gate") -> bool:
        return self.fire(E.AGENT_RELEASE, reason)

    def agent_cancel(self, reason: str = "agent cancelled") -> bool:
        return self.fire(E.AGENT_CANCEL, reason)

    def close(self) -> None:
        with self._lock:
            self._disarm_timer()


__all__ = [
    "DEFAULT_PASSAGE_WINDOW_S",
    "PASSAGE_STATES",
    "TRANSACTION_STATES",
    "TRANSITIONS",
    "Event",
    "GateController",
    "Relay",
    "Rule",
    "State",
    "Transition",
]
