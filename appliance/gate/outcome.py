"""How one traveller's turn at the gate ended, as the workflow, logs and screens need it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.custody.transaction import PurgeRecord


class Outcome(enum.StrEnum):
    GRANTED = "granted"  # a verified match opened the gate
    REFERRED = "referred"  # sent to the agent (no match, fault, refused pass, no usable face)
    MANUAL_CHECK = "manual_check"  # opted out: the agent checks documents by hand
    NO_FACE = "no_face"  # nobody in view during the window: not a traveller
    CANCELLED = "cancelled"  # the agent cancelled, or the gate reset, before a decision
    AGENT_RELEASED = "agent_released"  # the agent released the gate with no capture made
    RETAKEN = "retaken"  # a capture's end (ledger only): not verified, a second look follows


@dataclass
class TravellerOutcome:
    outcome: Outcome
    reason: str  # short text for people and logs; code branches on the fields, never on it
    capture_id: str = ""
    frame_sent: bool = False
    purge: PurgeRecord | None = None
    e2e_ms: float | None = None  # face in view -> relay command written
    frames_seen: int = 0
    traveller_token: str = ""  # from a MATCH verdict (pseudonymous, no biometrics)
    capture_ms: float | None = None  # capture window start -> sealed frame ready
    verify_ms: float | None = None  # frame sent -> verdict (or its failure)
    event: str = ""  # the gate machine event this outcome fired
    camera_ended: bool = False  # the camera gave no frame at all: nobody was served
    earlier_capture_ids: tuple[str, ...] = ()  # captures sent before ``capture_id`` (retakes)
    # (capture_ms, verify_ms) of each of ``earlier_capture_ids``, in the same order
    earlier_timings: tuple[tuple[float, float], ...] = ()


__all__ = ["Outcome", "TravellerOutcome"]
