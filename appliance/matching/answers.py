"""What the matching service answers, as the gate's logic sees it.

The client (``appliance.matching.client``) builds a :class:`Verdict` only from a wire
verdict whose signature, capture id, device id and time it has checked, and a
:class:`Session` from the service's answer to opening one; nothing past the client ever
sees the wire format.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Decision(enum.IntEnum):
    """The service's decision (numbered as on the wire, ``gate.v1.Decision``)."""

    UNSPECIFIED = 0
    MATCH = 1  # the face matches a traveller booked on this flight
    NO_MATCH = 2  # it matches someone, but not the boarding pass's passenger
    NOT_ON_FLIGHT = 3  # nobody in this flight's gallery matches
    IMAGE_UNUSABLE = 4  # the service found no usable face in the capture
    GALLERY_NOT_READY = 5

    @property
    def label(self) -> str:
        """Lower-case name, as logs and the boarding log show it (``not_on_flight``)."""
        return self.name.lower()


@dataclass(frozen=True)
class Verdict:
    """A checked verdict: authentic, for this capture from this device, issued recently."""

    capture_id: str
    device_id: str
    decision: Decision
    traveller_token: str  # pseudonymous id of the matched traveller; "" unless MATCH
    issued_at_ms: int


@dataclass(frozen=True)
class Session:
    """A flight session the service opened for this gate."""

    session_id: str
    gallery_size: int  # travellers enrolled for the flight (0: nobody to match yet)

    @property
    def gallery_ready(self) -> bool:
        return self.gallery_size > 0


__all__ = ["Decision", "Session", "Verdict"]
