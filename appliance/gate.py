"""The gate's state machine over the serial link: indicator, relay and the opt-out button.

Fail secure: the relay is opened only by ``grant`` (a short authenticated pulse the
firmware caps and closes by itself); every fault path calls ``refer``, which closes
the relay and shows "see agent". If the link itself fails, the firmware closes the
relay on its own when heartbeats stop.
"""

from __future__ import annotations

import logging
import threading
from enum import Enum

from firmware_bridge.host import GateLink, LinkError, OptOutPressed
from firmware_bridge.protocol import Indicator

log = logging.getLogger("gate.state")


class GateState(Enum):
    OUT_OF_SERVICE = "out_of_service"
    READY = "ready"
    CAPTURING = "capturing"
    GRANTED = "granted"
    SEE_AGENT = "see_agent"
    OPTED_OUT = "opted_out"


class GateController:
    def __init__(self, link: GateLink, *, pulse_ms: int = 3000) -> None:
        self._link = link
        self._pulse_ms = pulse_ms
        self._opt_out = threading.Event()
        self.state = GateState.OUT_OF_SERVICE
        link.on_event(self._on_event)

    def _on_event(self, event: object) -> None:
        # Runs on the link's reader thread: only note it; commands go from the gate thread.
        if isinstance(event, OptOutPressed):
            self._opt_out.set()

    def opt_out_pending(self) -> bool:
        return self._opt_out.is_set()

    def _show(self, state: GateState, pattern: int) -> None:
        self.state = state
        self._link.set_indicator(pattern)

    def start(self) -> None:
        """Greet the firmware and show "ready"; the gate stays shut until a grant."""
        self._link.hello()
        self._link.close_relay()
        self._show(GateState.READY, Indicator.READY)

    def ready(self) -> None:
        self._show(GateState.READY, Indicator.READY)

    def capturing(self) -> None:
        self._show(GateState.CAPTURING, Indicator.CAPTURING)

    def grant(self) -> None:
        """Open the barrier for one passage; on a link fault, fall back to "see agent"."""
        try:
            self._link.pulse_relay(self._pulse_ms)
            self._show(GateState.GRANTED, Indicator.GRANTED)
        except LinkError as exc:
            log.error("relay pulse failed: %s", exc)
            self.refer()

    def refer(self) -> None:
        """Keep the barrier shut and send the traveller to the agent."""
        try:
            self._link.close_relay()
            self._show(GateState.SEE_AGENT, Indicator.SEE_AGENT)
        except LinkError as exc:
            # The firmware closes the relay itself once heartbeats stop.
            log.error("gate link down while referring: %s", exc)
            self.state = GateState.OUT_OF_SERVICE

    def acknowledge_opt_out(self) -> None:
        """The traveller opted out: no photo; the agent checks documents by hand."""
        self._opt_out.clear()
        try:
            self._link.close_relay()
            self._show(GateState.OPTED_OUT, Indicator.OPT_OUT_ACK)
        except LinkError as exc:
            log.error("gate link down while acknowledging opt-out: %s", exc)
            self.state = GateState.OUT_OF_SERVICE
