"""The lane's live state as the screens see it: one board per gate, fed by the gate side.

:class:`LaneBoard` is the small publisher interface between the appliance and its web
pages. The gate side calls it from its own threads, and never waits on a page:

* ``follow(gate)`` once, then ``gate_changed(step)``: every transition of the gate
  machine (``GateController.on_transition``);
* ``capture_progress(progress)``: every frame a capture looks at
  (``TravellerPipeline.on_capture_progress``: a face box, keypoints and a quality key);
* ``agent_acted(agent_id, action, reason)``: an action taken at the agent station;
* ``refresh()``: re-read the traveller card and the health alerts (the web thread calls
  it about once a second; the card and health sources are callables handed in).

Each call updates one dictionary under a lock and bumps a sequence number; the web
thread's streams wait for a newer one (``wait_newer``) and send only the latest state,
so a slow page never holds up the gate, it just skips states. Three views select what
each page may see: the traveller display gets instruction keys and coordinates (no name,
no agent data), the agent station everything, the fleet overview a summary without
any traveller's data. Nothing here can hold a pixel: progress arrives as numbers only.

A quality instruction ("come closer") is shown for at least ``dwell_s`` before another
quality instruction replaces it, so it can be read; a change of the gate's state
replaces it at once. Face positions go out at most ``face_hz`` times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from appliance.gate.machine import Event, GateController, State, Transition
from appliance.gate.workflow import TravellerCard
from appliance.screens.lane import (
    Alert,
    Instruction,
    Referral,
    instruction_for,
    referral_for,
    step_for,
    target_outline,
)
from appliance.vision.feedback import Feedback
from appliance.vision.progress import CaptureProgress

DWELL_S = 0.5
FACE_HZ = 15.0
_WITH_AGENT = frozenset({State.REFER_TO_AGENT, State.MANUAL_CHECK})
_PASSING = frozenset({State.GRANTED, State.AGENT_RELEASED})
_CAPTURE = frozenset({State.CAPTURING, State.VERIFYING})

DISPLAY_FIELDS = ("seq", "idle", "instruction", "seat", "face", "target", "aspect", "cue")
SUMMARY_FIELDS = (
    "seq",
    "device",
    "gate",
    "flight",
    "phase",
    "step",
    "referral",
    "counters",
    "alerts",
)
AGENT_FIELDS = (*SUMMARY_FIELDS, "instruction", "traveller", "last_action", "actions")


@dataclass(frozen=True)
class LaneIdentity:
    device_id: str
    gate: str
    flight: str  # as people read it: "BA0283 2026-11-25 LAX"
    pass_first: bool  # pass-then-face: the display asks for the pass first


class LaneBoard:
    """Latest lane state, thread-safe; see the module docstring for who calls what."""

    def __init__(
        self,
        identity: LaneIdentity,
        *,
        min_inter_eye_px: float,
        zone_width: float | None,
        card: Callable[[], TravellerCard | None] = lambda: None,
        health: Callable[[], Iterable[Alert]] = frozenset,
        clock: Callable[[], float] = time.monotonic,
        dwell_s: float = DWELL_S,
        face_hz: float = FACE_HZ,
    ) -> None:
        self.identity = identity
        self._min_ied = min_inter_eye_px
        self._zone_width = zone_width
        self._card = card
        self._health = health
        self._clock = clock
        self._dwell_s = dwell_s
        self._face_interval = 1.0 / face_hz
        self._lock = threading.Lock()
        self._seq = 0
        self._phase = State.OUT_OF_SERVICE
        self._shown_since = clock()
        self._face_sent_at = -1e9
        self._two_faces = False
        self._followed = False
        self._from_feedback = False  # the instruction shown came from the capture's feedback
        self._health_now: set[Alert] = set()
        self._state: dict[str, Any] = {
            "device": identity.device_id,
            "gate": identity.gate,
            "flight": identity.flight,
            "phase": State.OUT_OF_SERVICE.value,
            "step": step_for(State.OUT_OF_SERVICE).value,
            "instruction": Instruction.LANE_CLOSED.value,
            "seat": "",
            "face": None,
            "target": target_outline((720, 720), min_inter_eye_px).as_dict(),
            "cue": False,
            "idle": False,
            "aspect": 1.0,  # the capture zone's height / width
            "referral": None,
            "traveller": None,
            "counters": {"boarded": 0, "referred": 0, "opt_outs": 0, "manual_checks": 0},
            "alerts": [],
            "last_action": None,
            "actions": [],
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._wake_pending = False
        self.closed = False

    # --- the gate side ----------------------------------------------------------------

    def follow(self, gate: GateController) -> None:
        """Listen to ``gate`` and start from its present state."""
        gate.on_transition(self.gate_changed)
        card = self._card()
        with self._lock:
            if self._followed:
                return  # a transition already told us
            self._phase = gate.phase
            self._set_card(card)
            self._set_instruction(
                instruction_for(self._phase, pass_first=self._pass_first, failure=None)
            )
            self._publish()

    def gate_changed(self, step: Transition) -> None:
        if not step.accepted:
            return
        card = self._card()
        with self._lock:
            self._followed = True
            source, phase = step.source, step.target
            self._phase = phase
            counters = self._state["counters"]
            if phase is not source:
                if phase in _PASSING:
                    counters["boarded"] += 1
                elif phase is State.REFER_TO_AGENT:
                    counters["referred"] += 1
                elif phase is State.MANUAL_CHECK:
                    counters["opt_outs"] += 1
            if step.event is Event.AGENT_RELEASE and source in _WITH_AGENT:
                counters["manual_checks"] += 1
            if phase in _WITH_AGENT and (phase is not source or step.event is Event.OPT_OUT):
                pass_check = card.pass_check if card is not None else None
                self._state["referral"] = referral_for(step.event, pass_check).value
            elif phase not in _WITH_AGENT:
                self._state["referral"] = None
            if step.event is Event.CAPTURE_STARTED or phase is State.READY:
                self._two_faces = False
            if phase not in _CAPTURE:
                self._state["face"] = None
            self._set_card(card)
            # entering a capture nobody has been seen yet: "look at the camera"
            failure = "no_face" if phase is State.CAPTURING else None
            self._set_instruction(
                instruction_for(phase, pass_first=self._pass_first, failure=failure)
            )
            self._from_feedback = False
            self._state["alerts"] = self._alerts(self._state_alerts())
            self._publish()

    def capture_progress(self, progress: CaptureProgress) -> None:
        now = self._clock()
        with self._lock:
            if self._phase is not State.CAPTURING:
                return
            changed = False
            if progress.faces > 1 and not self._two_faces:
                self._two_faces = True
                self._state["alerts"] = self._alerts(self._state_alerts())
                changed = True
            wanted = instruction_for(
                State.CAPTURING, pass_first=self._pass_first, failure=_failure(progress)
            )
            shown = self._state["instruction"]
            if wanted != shown and (
                not self._from_feedback or now - self._shown_since >= self._dwell_s
            ):
                self._set_instruction(wanted, now)
                self._from_feedback = True
                changed = True
            zone = self._zone(*progress.frame_size)
            # a second look needs a nearer face than the first: the outline grows with it
            needed = max(self._min_ied, progress.min_inter_eye_px)
            self._state["target"] = target_outline(zone[2:], needed).as_dict()
            self._state["aspect"] = round(zone[3] / max(zone[2], 1), 4)
            if changed or now - self._face_sent_at >= self._face_interval:
                self._state["face"] = _face_in_zone(progress, zone)
                self._face_sent_at = now
                changed = True
            if changed:
                self._publish()

    def agent_acted(self, agent_id: str, action: str, reason: str) -> None:
        with self._lock:
            self._state["last_action"] = {"agent": agent_id, "action": action, "reason": reason}
            self._publish()

    def refresh(self) -> None:
        """Re-read the traveller card and the health alerts; publish if they changed."""
        card = self._card()
        health = set(self._health())
        with self._lock:
            before = (self._state["traveller"], self._state["alerts"])
            self._set_card(card)
            self._health_now = health
            self._state["alerts"] = self._alerts(self._state_alerts())
            if (self._state["traveller"], self._state["alerts"]) != before:
                self._publish()

    @property
    def phase(self) -> State:
        return self._phase

    # --- the web side -----------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called once on the web thread's event loop before any stream starts."""
        with self._lock:
            self._loop = loop
            self._event = asyncio.Event()
            self._wake_pending = False

    def snapshot(self, fields: tuple[str, ...]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self._seq, _select(self._state, fields, self._seq)

    async def wait_newer(
        self, seq: int, fields: tuple[str, ...], timeout: float
    ) -> tuple[int, dict[str, Any]] | None:
        """The state after ``seq`` (latest only), or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self.closed or self._seq != seq:
                    return self._seq, _select(self._state, fields, self._seq)
                event = self._event
            left = deadline - time.monotonic()
            if left <= 0 or event is None:
                return None
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                return None

    def close(self) -> None:
        """End every stream (before the web server stops)."""
        with self._lock:
            self.closed = True
            self._seq += 1
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(self._wake)

    # --- inside -----------------------------------------------------------------------

    @property
    def _pass_first(self) -> bool:
        return self.identity.pass_first

    def _state_alerts(self) -> set[Alert]:
        alerts = set()
        if self._state["referral"] == Referral.ALREADY_BOARDED:
            alerts.add(Alert.ALREADY_BOARDED)
        if self._two_faces:
            alerts.add(Alert.TWO_FACES)
        return alerts

    def _alerts(self, from_state: set[Alert]) -> list[str]:
        return sorted(a.value for a in from_state | self._health_now)

    def _set_instruction(self, instruction: Instruction, now: float | None = None) -> None:
        if self._state["instruction"] != instruction.value:
            self._state["instruction"] = instruction.value
            self._shown_since = self._clock() if now is None else now
        self._state["cue"] = self._phase is State.CAPTURING
        self._state["idle"] = self._phase is State.READY
        card = self._state["traveller"]
        passing = instruction is Instruction.PROCEED and card is not None
        self._state["seat"] = card["seat"] if passing else ""
        self._state["phase"] = self._phase.value
        self._state["step"] = step_for(self._phase).value
        self._state["actions"] = _actions(self._phase)

    def _set_card(self, card: TravellerCard | None) -> None:
        if card is None:
            self._state["traveller"] = None
            return
        self._state["traveller"] = {
            "number": card.number,
            "name": card.passenger,
            "seat": card.seat,
            "flight": card.flight,
            "pass_check": card.pass_check.value if card.pass_check else None,
            "scans": card.scans,
            "bad_scans": card.bad_scans,
        }

    def _zone(self, width: int, height: int) -> tuple[float, float, int, int]:
        """The capture zone in the frame: x offset, y offset, width, height (pixels)."""
        zone_w = width if self._zone_width is None else min(width, self._zone_width * height)
        return (width - zone_w) / 2, 0.0, int(zone_w), height

    def _publish(self) -> None:
        """Bump the sequence (lock held) and wake the web thread's streams."""
        self._seq += 1
        loop = self._loop
        if loop is None or self._wake_pending:
            return
        self._wake_pending = True
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop closed meanwhile: nobody to wake
            self._wake_pending = False

    def _wake(self) -> None:
        """On the event loop: wake every stream waiting now (they wait on the next event)."""
        with self._lock:
            self._wake_pending = False
            event, self._event = self._event, asyncio.Event()
        if event is not None:
            event.set()


def _actions(phase: State) -> list[str]:
    """What the agent station may do now (the server checks again)."""
    if phase in _WITH_AGENT:
        return ["release", "cancel"]
    if phase in _CAPTURE or phase in _PASSING:
        return ["cancel"]
    return []


def _failure(progress: CaptureProgress) -> str | None:
    """The quality measure the traveller's instruction answers (None: nothing failed)."""
    if progress.box is None:
        return "no_face"
    if progress.failures:
        return progress.failures[0]
    if progress.feedback is Feedback.ONE_AT_A_TIME:
        return "single_face"  # a companion the selection still remembers
    return None


def _face_in_zone(progress: CaptureProgress, zone: tuple[float, float, int, int]) -> dict | None:
    """The face's box and eyes as fractions of the capture zone (what the cue draws)."""
    if progress.box is None:
        return None
    x_off, _, zone_w, _ = zone
    height = max(progress.frame_size[1], 1)

    def zx(x: float) -> float:
        return round(min(max((x - x_off) / zone_w, 0.0), 1.0), 4)

    def zy(y: float) -> float:
        return round(min(max(y / height, 0.0), 1.0), 4)

    x0, y0, x1, y1 = progress.box
    eyes = [[zx(x), zy(y)] for x, y in (progress.keypoints or ())[:2]]
    return {
        "x": zx(x0),
        "y": zy(y0),
        "w": round(zx(x1) - zx(x0), 4),
        "h": round(zy(y1) - zy(y0), 4),
        "eyes": eyes,
    }


def _select(state: dict[str, Any], fields: tuple[str, ...], seq: int) -> dict[str, Any]:
    view = {name: state[name] for name in fields if name != "seq"}
    view["seq"] = seq
    return _copy(view)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


__all__ = [
    "AGENT_FIELDS",
    "DISPLAY_FIELDS",
    "DWELL_S",
    "FACE_HZ",
    "SUMMARY_FIELDS",
    "LaneBoard",
    "LaneIdentity",
]
