"""What the screens say about the lane: message keys, never sentences and never pixels.

Pure functions from the gate's state to the keys the pages translate
(``appliance.screens.catalog``): the traveller's instruction, why a traveller was sent
to the agent, which alerts are up, and where the face should be. Keeping them keys means
the stream to a page carries no free text from anywhere in the appliance.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from appliance.gate.machine import Event, State
from appliance.gate.passes import PassOutcome


class Instruction(enum.StrEnum):
    SCAN_PASS = "scan_pass"
    LOOK_AT_CAMERA = "look_at_camera"
    COME_CLOSER = "come_closer"
    LOOK_STRAIGHT = "look_straight"
    STEP_TO_CENTRE = "step_to_centre"
    ONE_AT_A_TIME = "one_at_a_time"
    HOLD_STILL = "hold_still"
    PROCEED = "proceed"
    SEE_AGENT = "see_agent"
    MANUAL_CHECK = "manual_check"
    LANE_CLOSED = "lane_closed"


# The first failing quality measure (appliance.vision.quality) -> what to ask of the traveller.
_FEEDBACK = {
    "no_face": Instruction.LOOK_AT_CAMERA,
    "inter_eye_distance": Instruction.COME_CLOSER,
    "single_face": Instruction.ONE_AT_A_TIME,
    "inside_frame": Instruction.STEP_TO_CENTRE,
    "centre": Instruction.STEP_TO_CENTRE,
    "roll": Instruction.LOOK_STRAIGHT,
    "yaw": Instruction.LOOK_STRAIGHT,
    "pitch": Instruction.LOOK_STRAIGHT,
    "sharpness": Instruction.HOLD_STILL,
    "motion": Instruction.HOLD_STILL,
    "exposure": Instruction.LOOK_AT_CAMERA,
    "clipping": Instruction.LOOK_AT_CAMERA,
    "contrast": Instruction.LOOK_AT_CAMERA,
}


def instruction_for(phase: State, *, pass_first: bool, failure: str | None) -> Instruction:
    """The traveller's instruction in ``phase``; ``failure`` is the capture's latest
    quality feedback (None: the last frame passed, or no frame yet)."""
    if phase is State.READY:
        return Instruction.SCAN_PASS if pass_first else Instruction.LOOK_AT_CAMERA
    if phase is State.CAPTURING:
        if failure is None:
            return Instruction.HOLD_STILL
        return _FEEDBACK.get(failure, Instruction.LOOK_AT_CAMERA)
    return {
        State.VERIFYING: Instruction.HOLD_STILL,
        State.GRANTED: Instruction.PROCEED,
        State.AGENT_RELEASED: Instruction.PROCEED,
        State.REFER_TO_AGENT: Instruction.SEE_AGENT,
        State.MANUAL_CHECK: Instruction.MANUAL_CHECK,
        State.OUT_OF_SERVICE: Instruction.LANE_CLOSED,
    }[phase]


class Step(enum.StrEnum):
    """The current traveller's step, as the agent reads it."""

    WAITING = "waiting"  # nobody: ready for the next traveller
    CAPTURING = "capturing"
    VERIFYING = "verifying"
    PASSING = "passing"  # granted or released: walking through
    WITH_AGENT = "with_agent"  # referred or manual check: the agent decides
    OUT_OF_SERVICE = "out_of_service"


def step_for(phase: State) -> Step:
    return {
        State.READY: Step.WAITING,
        State.CAPTURING: Step.CAPTURING,
        State.VERIFYING: Step.VERIFYING,
        State.GRANTED: Step.PASSING,
        State.AGENT_RELEASED: Step.PASSING,
        State.REFER_TO_AGENT: Step.WITH_AGENT,
        State.MANUAL_CHECK: Step.WITH_AGENT,
        State.OUT_OF_SERVICE: Step.OUT_OF_SERVICE,
    }[phase]


class Referral(enum.StrEnum):
    """Why the traveller is with the agent: no score, no image, no template."""

    NO_MATCH = "no_match"  # the face is not the pass holder's
    NOT_ON_FLIGHT = "not_on_flight"
    IMAGE_UNUSABLE = "image_unusable"
    NO_USABLE_FACE = "no_usable_face"
    VERDICT_TIMEOUT = "verdict_timeout"
    MATCHER_UNAVAILABLE = "matcher_unavailable"
    DOOR_HELD_OPEN = "door_held_open"
    GATE_ERROR = "gate_error"
    OPTED_OUT = "opted_out"
    WRONG_FLIGHT = "wrong_flight"
    WRONG_DATE = "wrong_date"
    WRONG_AIRPORT = "wrong_airport"
    ALREADY_BOARDED = "already_boarded"
    NOT_CHECKED_IN = "not_checked_in"


_EVENT_REFERRALS = {
    Event.NO_MATCH: Referral.NO_MATCH,
    Event.NOT_ON_FLIGHT: Referral.NOT_ON_FLIGHT,
    Event.UNUSABLE: Referral.IMAGE_UNUSABLE,
    Event.NO_USABLE_FACE: Referral.NO_USABLE_FACE,
    Event.VERDICT_TIMEOUT: Referral.VERDICT_TIMEOUT,
    Event.MATCHER_UNAVAILABLE: Referral.MATCHER_UNAVAILABLE,
    Event.DOOR_HELD_OPEN: Referral.DOOR_HELD_OPEN,
    Event.ERROR: Referral.GATE_ERROR,
    Event.OPT_OUT: Referral.OPTED_OUT,
}
_PASS_REFERRALS = {
    PassOutcome.WRONG_FLIGHT: Referral.WRONG_FLIGHT,
    PassOutcome.WRONG_DATE: Referral.WRONG_DATE,
    PassOutcome.WRONG_AIRPORT: Referral.WRONG_AIRPORT,
    PassOutcome.ALREADY_BOARDED: Referral.ALREADY_BOARDED,
    PassOutcome.NOT_CHECKED_IN: Referral.NOT_CHECKED_IN,
}


def referral_for(event: Event, pass_check: PassOutcome | None) -> Referral:
    """Why the gate went to ``refer_to_agent`` or ``manual_check`` on ``event``."""
    if event is Event.PASS_REFUSED and pass_check in _PASS_REFERRALS:
        return _PASS_REFERRALS[pass_check]
    return _EVENT_REFERRALS.get(event, Referral.GATE_ERROR)


class Alert(enum.StrEnum):
    """What the agent must know now (the fleet's alerts come from ``/metrics``)."""

    MATCHER_DOWN = "matcher_down"
    CAMERA_STALLED = "camera_stalled"
    MCU_LINK_LOST = "mcu_link_lost"
    LEDGER_NOT_DURABLE = "ledger_not_durable"
    ALREADY_BOARDED = "already_boarded"
    TWO_FACES = "two_faces"


@dataclass(frozen=True)
class Outline:
    """An ellipse in fractions of the picture the screen draws (the capture zone)."""

    cx: float
    cy: float
    rx: float
    ry: float

    def as_dict(self) -> dict[str, float]:
        return {"cx": self.cx, "cy": self.cy, "rx": self.rx, "ry": self.ry}


# BlazeFace's box is about 2.6 inter-eye distances wide and as tall as it is wide.
_BOX_PER_EYE_DISTANCE = 2.6


def target_outline(zone_px: tuple[int, int], min_inter_eye_px: float) -> Outline:
    """Where the face should be: the zone's centre, at twice the smallest usable size."""
    width, height = zone_px
    face = _BOX_PER_EYE_DISTANCE * 2 * min_inter_eye_px
    rx = min(0.45, face / 2 / width)
    ry = min(0.45, face * 1.25 / 2 / height)
    return Outline(0.5, 0.5, round(rx, 4), round(ry, 4))


__all__ = [
    "Alert",
    "Instruction",
    "Outline",
    "Referral",
    "Step",
    "instruction_for",
    "referral_for",
    "step_for",
    "target_outline",
]
